//! The symbolized profile of one capture, what the capture was, and the
//! encoders that turn them into bytes.
//!
//! `symbolize` builds a [`Profile`] from aggregated kernel samples; the
//! encoders here — [`pprof`], [`flamegraph`], [`folded`], [`manifest`] and
//! the top-functions [`report`] — turn one into a file's contents, without
//! any I/O: where the bytes go is a sink's business (`crate::sink`). The
//! model mirrors pprof's (mappings, locations with inlined lines, samples
//! with several values) so the pprof encoder is a direct translation and
//! the others lose nothing they need.

pub(crate) mod capture;
pub(crate) mod diff;
pub(crate) mod flamegraph;
pub(crate) mod folded;
pub(crate) mod format;
pub(crate) mod kind;
pub(crate) mod manifest;
pub(crate) mod pprof;
pub(crate) mod quality;
pub(crate) mod report;
#[cfg(test)]
pub(crate) mod testdata;
pub(crate) mod time;

use std::time::{Duration, SystemTime};

pub(crate) use kind::{ProfileKind, ProfileSet};

/// A pprof `ValueType`: what one value of a sample measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueType {
    /// e.g. `samples`, `cpu`.
    pub kind: String,
    /// e.g. `count`, `nanoseconds`.
    pub unit: String,
}

impl ValueType {
    pub fn new(kind: &str, unit: &str) -> Self {
        Self { kind: kind.to_owned(), unit: unit.to_owned() }
    }
}

/// A mapped object (executable, shared library, the kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address of the mapping.
    pub start: u64,
    /// One past its last virtual address.
    pub limit: u64,
    /// File offset that `start` maps.
    pub offset: u64,
    /// Path of the mapped file as the process sees it, or `[kernel.kallsyms]`.
    pub path: String,
    /// Hex-encoded GNU build ID, when the file has one.
    pub build_id: Option<String>,
}

/// One source-level frame at a location. A location with inlined calls has
/// several, innermost (the inlined callee) first, as in pprof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Demangled function name, or a placeholder such as `[unknown]` /
    /// `libfoo.so+0x1234` when the address could not be symbolized.
    pub function: String,
    /// Source file, when debug info has it.
    pub file: Option<String>,
    /// Source line, when debug info has it (0 is never stored).
    pub line: Option<u32>,
}

/// A unique code address of a process or of the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The virtual address (for user frames, in the process's address space).
    pub address: u64,
    /// Index into [`Profile::mappings`].
    pub mapping: Option<usize>,
    /// Innermost first; never empty.
    pub lines: Vec<Line>,
    /// A kernel frame (flamegraphs mark these with `_[k]`).
    pub kernel: bool,
}

/// A stack with its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub pid: crate::ids::Pid,
    pub tid: crate::ids::Tid,
    pub comm: String,
    /// Indices into [`Profile::locations`], leaf (innermost) first: kernel
    /// frames, then user frames.
    pub locations: Vec<usize>,
    /// One value per [`Profile::sample_types`] entry.
    pub values: Vec<i64>,
}

/// One profile of one kind.
#[derive(Clone, Debug)]
pub struct Profile {
    pub kind: ProfileKind,
    pub sample_types: Vec<ValueType>,
    /// The sample type `go tool pprof` shows by default (e.g. `cpu`).
    pub default_sample_type: Option<String>,
    pub period_type: ValueType,
    /// Sampling period in `period_type` units (e.g. 10101010 ns at 99 Hz).
    pub period: i64,
    pub start: SystemTime,
    pub duration: Duration,
    pub mappings: Vec<Mapping>,
    pub locations: Vec<Location>,
    pub samples: Vec<Sample>,
    /// For the flight recorder's profile only: the start of each sample's
    /// time slot, one per sample (labelled `slot` in pprof); empty otherwise.
    pub slots: Vec<SystemTime>,
}

impl Profile {
    /// An empty CPU profile at `frequency_hz`: sample types `samples/count`
    /// and `cpu/nanoseconds`, period in nanoseconds.
    pub fn new_cpu(frequency_hz: u64, start: SystemTime, duration: Duration) -> Self {
        Self {
            kind: ProfileKind::Cpu,
            sample_types: vec![ValueType::new("samples", "count"), ValueType::new("cpu", "nanoseconds")],
            default_sample_type: Some("cpu".to_owned()),
            period_type: ValueType::new("cpu", "nanoseconds"),
            period: cpu_period_ns(frequency_hz),
            start,
            duration,
            mappings: Vec::new(),
            locations: Vec::new(),
            samples: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// An empty off-CPU profile: `switches/count` and `offcpu/nanoseconds`.
    pub fn new_offcpu(start: SystemTime, duration: Duration) -> Self {
        Self {
            kind: ProfileKind::OffCpu,
            sample_types: vec![ValueType::new("switches", "count"), ValueType::new("offcpu", "nanoseconds")],
            default_sample_type: Some("offcpu".to_owned()),
            period_type: ValueType::new("offcpu", "nanoseconds"),
            period: 1,
            start,
            duration,
            mappings: Vec::new(),
            locations: Vec::new(),
            samples: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// An empty memory profile. Sample types are named like Go heap
    /// profiles so `go tool pprof -sample_index=alloc_space` works:
    /// `alloc_objects/count` and `alloc_space/bytes` (sampled allocations,
    /// scaled back up), `inuse_objects/count` and `inuse_space/bytes` (those
    /// of them not freed by the window's end), and `page_faults/count`
    /// (sampled page faults: where new memory was first touched).
    pub fn new_memory(alloc_period_bytes: u64, start: SystemTime, duration: Duration) -> Self {
        Self {
            kind: ProfileKind::Memory,
            sample_types: vec![
                ValueType::new("alloc_objects", "count"),
                ValueType::new("alloc_space", "bytes"),
                ValueType::new("inuse_objects", "count"),
                ValueType::new("inuse_space", "bytes"),
                ValueType::new("page_faults", "count"),
            ],
            default_sample_type: Some("alloc_space".to_owned()),
            period_type: ValueType::new("space", "bytes"),
            period: alloc_period_bytes as i64,
            start,
            duration,
            mappings: Vec::new(),
            locations: Vec::new(),
            samples: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Puts the profile in the shape readers expect: the kernel mapping (if
    /// any) after the user ones, because `go tool pprof` takes the first
    /// mapping for the main binary; and no outermost frames that lie in no
    /// mapping (a frame-pointer walk that ran past the real outermost frame
    /// into a heap or stack address).
    pub fn normalize(&mut self) {
        if let Some(k) = self.mappings.iter().position(|m| m.path.starts_with("[kernel")) {
            let last = self.mappings.len() - 1;
            if k != last {
                let kernel = self.mappings.remove(k);
                self.mappings.push(kernel);
                for loc in &mut self.locations {
                    loc.mapping = loc.mapping.map(|m| match m {
                        m if m == k => last,
                        m if m > k => m - 1,
                        m => m,
                    });
                }
            }
        }
        let stray: Vec<bool> = self
            .locations
            .iter()
            .map(|l| {
                !l.kernel
                    && l.mapping.is_none()
                    && l.address != 0
                    && l.lines.iter().all(|x| x.function.starts_with('['))
            })
            .collect();
        for s in &mut self.samples {
            while s.locations.len() > 1 && s.locations.last().is_some_and(|&i| stray[i]) {
                s.locations.pop();
            }
        }
    }

    /// Drops, from the leaf end of the samples `select` picks, user frames
    /// whose function `is_internal` names (an allocator's own frames), so
    /// the leaf is the code that asked for memory. At least one frame stays.
    pub fn strip_leaf_frames(&mut self, select: impl Fn(&Sample) -> bool, is_internal: impl Fn(&str) -> bool) {
        let internal: Vec<bool> = self
            .locations
            .iter()
            .map(|l| !l.kernel && l.lines.last().is_some_and(|line| is_internal(&line.function)))
            .collect();
        for s in self.samples.iter_mut().filter(|s| select(s)) {
            let skip =
                s.locations.iter().take_while(|&&i| internal[i]).count().min(s.locations.len().saturating_sub(1));
            s.locations.drain(..skip);
        }
    }

    /// Total of the first value over all samples (the sample count for cpu).
    pub fn total(&self, value_index: usize) -> i64 {
        self.samples.iter().map(|s| s.values.get(value_index).copied().unwrap_or(0)).sum()
    }
}

/// Nanoseconds between samples at `frequency_hz` (never zero).
pub(crate) fn cpu_period_ns(frequency_hz: u64) -> i64 {
    (1_000_000_000 / frequency_hz.max(1)) as i64
}
