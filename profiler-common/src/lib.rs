//! Types and constants shared by the stackwatch eBPF program and user space.
//!
//! Everything that crosses the kernel/user boundary lives here: map names and
//! capacities, the sample key, the stack record and the loader-set
//! configuration. Structs are `#[repr(C)]` with fixed-width fields and explicit
//! padding, and their sizes are asserted at compile time so a change on one
//! side cannot silently desynchronise the other.
#![no_std]

use core::mem::size_of;

pub mod python;
pub mod unwind;
pub use unwind::{Truncation, UnwindMode};

/// Frames kept per stack. Matches the kernel's default
/// `kernel.perf_event_max_stack`, so a stack of exactly this many frames was
/// probably truncated (counted in [`Stat::UserStackTruncated`] /
/// [`Stat::KernelStackTruncated`]).
pub const MAX_STACK_DEPTH: usize = 127;

/// Capacity of [`MAP_STACKS`]: distinct stacks of more than
/// [`SHORT_STACK_DEPTH`] frames seen in one capture. The map is not
/// preallocated, so memory is only used as stacks arrive: at most
/// `8192 × 1 KiB = 8 MiB`.
pub const STACKS_MAP_ENTRIES: u32 = 8192;

/// Frames of a stack kept in [`MAP_SHORT_STACKS`] rather than
/// [`MAP_STACKS`]: most stacks (a Python thread's 14 native frames and its
/// interpreter frames, a CPU-bound program's handful) are this short, and
/// storing a new one copies and allocates a quarter of a [`StackRecord`].
pub const SHORT_STACK_DEPTH: usize = 31;

/// Capacity of [`MAP_SHORT_STACKS`]: distinct stacks of at most
/// [`SHORT_STACK_DEPTH`] frames (user and kernel alike) seen in one
/// capture; a 30 s whole-host capture on a busy 2-CPU host sees a few
/// thousand. Not preallocated: at most `8192 × 256 B = 2 MiB`.
pub const SHORT_STACKS_MAP_ENTRIES: u32 = 8192;

/// Capacity of [`MAP_COUNTS`]: distinct (pid, tid, comm, user stack, kernel
/// stack) tuples per capture. Not preallocated: an entry (48 bytes of key and
/// value, about 100 with the hash table's overhead) costs memory once seen,
/// at most about 1.6 MiB when full.
pub const COUNTS_MAP_ENTRIES: u32 = 16384;

/// Capacity of [`MAP_OFFCPU_START`]: target threads switched out at once.
/// 48-byte values, preallocated: about 0.8 MiB.
pub const OFFCPU_START_MAP_ENTRIES: u32 = 8192;

/// Capacity of [`MAP_OFFCPU_COUNTS`] and [`MAP_FAULT_COUNTS`]: distinct
/// (pid, tid, comm, stacks) tuples per capture for those profiles.
pub const OFFCPU_COUNTS_MAP_ENTRIES: u32 = 8192;
pub const FAULT_COUNTS_MAP_ENTRIES: u32 = 8192;

/// Capacity of [`MAP_ALLOC_COUNTS`]: distinct allocation sites per capture.
pub const ALLOC_COUNTS_MAP_ENTRIES: u32 = 8192;

/// Capacity of [`MAP_LIVE_ALLOCS`]: sampled allocations not yet freed. At
/// the default 512 KiB sampling period that is ~8 GiB allocated and still
/// held within one capture; allocated on use (56-byte values, 16-byte keys),
/// so it costs what the target holds. Past it, allocations are counted in
/// [`Stat::LiveAllocsFull`] and missing from the in-use view.
pub const LIVE_ALLOCS_MAP_ENTRIES: u32 = 16384;

/// Capacity of [`MAP_ALLOC_PENDING`]: threads between a sampled
/// allocation's entry and its return at once.
pub const ALLOC_PENDING_MAP_ENTRIES: u32 = 4096;

/// Capacity of [`MAP_TARGET_PIDS`]: processes selected by `--pid`/`--name`.
pub const TARGET_PIDS_MAP_ENTRIES: u32 = 4096;

pub const MAP_STACKS: &str = "STACKS";
/// Stacks of at most [`SHORT_STACK_DEPTH`] frames (see [`ShortStackRecord`]).
pub const MAP_SHORT_STACKS: &str = "SHORT_STACKS";
pub const MAP_COUNTS: &str = "COUNTS";
pub const MAP_TARGET_PIDS: &str = "TARGET_PIDS";
pub const MAP_STATS: &str = "STATS";
pub const MAP_SCRATCH: &str = "SCRATCH";
pub const MAP_OFFCPU_START: &str = "OFFCPU_START";
pub const MAP_OFFCPU_COUNTS: &str = "OFFCPU_COUNTS";
pub const MAP_FAULT_COUNTS: &str = "FAULT_COUNTS";
pub const MAP_ALLOC_COUNTS: &str = "ALLOC_COUNTS";
/// Sampled allocations still held: [`LiveKey`] → [`LiveAlloc`].
pub const MAP_LIVE_ALLOCS: &str = "LIVE_ALLOCS";
/// A sampled allocation between its allocator's entry and return, by
/// thread id: [`LiveAlloc`].
pub const MAP_ALLOC_PENDING: &str = "ALLOC_PENDING";
/// Name of the one-entry array map holding the capture [`Window`].
pub const MAP_WINDOW: &str = "WINDOW";
/// Name of the loader-set global holding [`Config`].
pub const GLOBAL_CONFIG: &str = "CONFIG";
/// Name of the flight recorder's ring buffer ([`HistoryRecord`]s).
pub const MAP_HISTORY: &str = "HISTORY";
/// Name of the flight recorder's per-CPU counters ([`HistoryStat`]).
pub const MAP_HISTORY_STATS: &str = "HISTORY_STATS";
/// Name of the flight recorder's perf_event program: loaded and attached
/// only when `watch --history` is set, at its own low frequency.
pub const PROG_HISTORY_SAMPLE: &str = "history_sample";

/// Size of [`MAP_HISTORY`] when the flight recorder is on: 512 KiB holds
/// 250 records, 6 s of a 2-CPU host sampled at 19 Hz with every sample a
/// full record, and user space drains it every second. When it is off the
/// loader shrinks it to one page. A sample that finds it full is counted in
/// [`HistoryStat::Lost`].
pub const HISTORY_RING_BYTES: u32 = 512 * 1024;

/// One flight-recorder sample, sent whole to user space (the recorder
/// aggregates there, into time slots, so a capture's maps are never
/// touched): the task and both stacks, innermost frame first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HistoryRecord {
    pub pid: u32,
    pub tid: u32,
    pub comm: [u8; 16],
    /// Frames in `user`, 0 for a kernel thread or a stack that could not be read.
    pub user_len: u32,
    /// Frames in `kernel`, 0 when the sample interrupted user code.
    pub kernel_len: u32,
    /// When the process started (its leader's `start_boottime`, ns since
    /// boot, what `/proc/PID/stat` gives in clock ticks), 0 if unknown: a
    /// pid is reused within minutes on a busy host, and the pair tells two
    /// processes that had the same pid apart.
    pub start_ns: u64,
    pub user: [u64; MAX_STACK_DEPTH],
    pub kernel: [u64; MAX_STACK_DEPTH],
}
const _: () = assert!(size_of::<HistoryRecord>() == 40 + 2 * 8 * MAX_STACK_DEPTH);

/// Counters of the flight recorder, apart from [`Stat`] so that history
/// samples never show in a capture's accounting.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryStat {
    /// Samples sent to user space.
    Sent = 0,
    /// Samples dropped: the ring buffer was full.
    Lost = 1,
}

impl HistoryStat {
    pub const COUNT: u32 = 2;
}
/// Name of the CPU-clock perf_event program in the object.
pub const PROG_CPU_SAMPLE: &str = "cpu_sample";
/// Name of the `sched_switch` BTF tracepoint program (off-CPU time).
pub const PROG_SCHED_SWITCH: &str = "sched_switch";
/// Name of the `sched_process_exec` raw tracepoint program: a process that
/// replaced its program loses the mappings the table unwinder knew.
pub const PROG_PROCESS_EXEC: &str = "process_exec";
/// Name of the page-fault perf_event program (memory growth).
pub const PROG_FAULT_SAMPLE: &str = "fault_sample";
/// Name of the uprobe on C `malloc` (size in the first argument).
pub const PROG_MALLOC_ENTRY: &str = "malloc_entry";
/// Name of the uprobe on C `calloc` (count and size in the first two arguments).
pub const PROG_CALLOC_ENTRY: &str = "calloc_entry";
/// Name of the uprobe on C `realloc` (the old block is freed, the new one sampled).
pub const PROG_REALLOC_ENTRY: &str = "realloc_entry";
/// Name of the uprobe on C `free`: a sampled allocation is no longer held.
pub const PROG_FREE_ENTRY: &str = "free_entry";
/// Name of the uretprobe on `malloc`, `calloc` and `realloc`: the address
/// of a sampled allocation, remembered until it is freed.
pub const PROG_ALLOC_RETURN: &str = "alloc_return";
/// Name of the uprobe on the Go runtime's allocation slow paths. The
/// attach cookie says which: [`GO_PROBE_REFILL`] or [`GO_PROBE_ALLOC_LARGE`].
pub const PROG_GO_ALLOC: &str = "go_alloc";
/// `runtime.(*mcache).refill(spc spanClass)`: a goroutine's cache ran out of
/// objects of one size class and takes a fresh span. It happens once per
/// span's worth of allocation, so each refill stands for the span's bytes,
/// charged to the allocation that triggered it: sampling by bytes, paid only
/// on the slow path. `spc` (size class << 1 | noscan) is in RBX.
pub const GO_PROBE_REFILL: u64 = 0;
/// `runtime.(*mcache).allocLarge(size, noscan)`: an allocation over 32 KiB,
/// counted exactly; `size` is in RBX.
pub const GO_PROBE_ALLOC_LARGE: u64 = 1;

/// Go's `class_to_size` (runtime/sizeclasses.go, unchanged since Go 1.12).
pub const GO_CLASS_TO_SIZE: [u16; 68] = [
    0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448,
    480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096,
    4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072,
    20480, 21760, 24576, 27264, 28672, 32768,
];
/// Go's `class_to_allocnpages`: 8 KiB pages per span of each size class.
pub const GO_CLASS_TO_NPAGES: [u8; 68] = [
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 2,
    1, 2, 1, 3, 2, 3, 1, 3, 2, 3, 4, 5, 6, 1, 7, 6, 5, 4, 3, 5, 7, 2, 9, 7, 5, 8, 3, 10, 7, 4,
];

/// Stack id meaning "no stack": a user-mode sample has no kernel frames and a
/// kernel thread has no user frames. Not a loss.
pub const STACK_ID_NONE: u64 = 0;
/// Stack id meaning "the stack could not be stored" (map full or the helper
/// failed). The loss is counted in [`MAP_STATS`].
pub const STACK_ID_LOST: u64 = u64::MAX;

/// Which tasks the kernel program keeps.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// Every task except the per-CPU idle tasks.
    All = 0,
    /// Tasks whose tgid is in the [`Gate`]'s pids or, for a larger set, a
    /// key of [`MAP_TARGET_PIDS`].
    Pids = 1,
    /// Tasks in the cgroup [`Config::cgroup_id`] or one of its descendants.
    Cgroup = 2,
}

/// Loader-set configuration, written into the program's `CONFIG` global
/// before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// A [`FilterMode`] discriminant.
    pub filter_mode: u32,
    /// Depth of the target cgroup below the cgroup v2 root (root = 0).
    pub cgroup_level: u32,
    /// Inode number of the target cgroup directory (its cgroup id).
    pub cgroup_id: u64,
    /// Off-CPU intervals shorter than this are not recorded.
    pub offcpu_min_ns: u64,
    /// `malloc` sampling: one sample per this many bytes allocated (per CPU).
    pub malloc_sample_bytes: u64,
    /// An [`UnwindMode`] discriminant: how user stacks are walked.
    pub unwind_mode: u32,
    /// Offset of `task_struct.thread.fsbase` (the thread pointer, where
    /// glibc's `struct pthread` starts), from the kernel's BTF; 0 when it
    /// could not be found, which turns the Python walk off.
    pub task_fsbase_offset: u32,
    /// Offsets of `task_struct.group_leader` and `.start_boottime`, from
    /// the kernel's BTF (0: not found, history samples carry no start time).
    pub task_group_leader_offset: u32,
    pub task_start_boottime_offset: u32,
}
const _: () = assert!(size_of::<Config>() == 48);

impl Config {
    pub const fn all() -> Self {
        Self {
            filter_mode: FilterMode::All as u32,
            cgroup_level: 0,
            cgroup_id: 0,
            offcpu_min_ns: 1000,
            malloc_sample_bytes: 512 * 1024,
            unwind_mode: UnwindMode::FramePointers as u32,
            task_fsbase_offset: 0,
            task_group_leader_offset: 0,
            task_start_boottime_offset: 0,
        }
    }
}

/// When events count, in `bpf_ktime_get_ns` time (`CLOCK_MONOTONIC`): in
/// `[start_ns, end_ns)`. Part of the only entry of [`MAP_WINDOW`] (a
/// [`Gate`]).
///
/// User space opens the window once every program is attached and closes it
/// early on a stop; the deadline itself is enforced here, in the kernel, so
/// neither a late wake-up of the profiler nor the time detaching takes adds
/// events to a capture. Off-CPU intervals are clipped to the window. Between
/// captures the window is [`Window::CLOSED`] (all zeros, the map's initial
/// value): every program returns at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}
const _: () = assert!(size_of::<Window>() == 16);

/// Pids a [`Gate`] holds in place: `--pid P`, a service and its workers.
pub const GATE_PIDS: usize = 11;

/// [`Gate::target_count`] of a pid-set target too large to hold in place:
/// the program looks the pid up in [`MAP_TARGET_PIDS`].
pub const GATE_PIDS_IN_MAP: u32 = u32::MAX;

/// The only entry of [`MAP_WINDOW`]: what every program reads first, in
/// one cache line — when events count, and for a pid-set target of at most
/// [`GATE_PIDS`] processes, whose. Every event of every task is filtered,
/// and at 99 Hz the caches are cold at each sample: a hash-map lookup
/// (hashing, a bucket, an element: cache misses) cost about a fifth of a
/// sample's BPF time, a few compares in the line already read next to
/// nothing. A larger set is looked up in [`MAP_TARGET_PIDS`], which always
/// holds the whole set.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    pub window: Window,
    /// Pids in `target_pids`, or [`GATE_PIDS_IN_MAP`]; read only under
    /// [`FilterMode::Pids`].
    pub target_count: u32,
    pub target_pids: [u32; GATE_PIDS],
}
const _: () = assert!(size_of::<Gate>() == 64);

impl Gate {
    /// `window`, and the pid set `pids` (in place if it fits).
    pub fn new(window: Window, pids: &[u32]) -> Self {
        let mut gate = Self { window, target_count: GATE_PIDS_IN_MAP, target_pids: [0; GATE_PIDS] };
        if pids.len() <= GATE_PIDS {
            gate.target_pids[..pids.len()].copy_from_slice(pids);
            gate.target_count = pids.len() as u32;
        }
        gate
    }

    /// Whether `pid` is in the pid set: `None` when the set is too large
    /// to be held here ([`MAP_TARGET_PIDS`] says).
    #[inline(always)]
    pub fn holds(&self, pid: u32) -> Option<bool> {
        if self.target_count == GATE_PIDS_IN_MAP {
            return None;
        }
        // A fixed number of compares, no early exit: straight-line code
        // for the verifier.
        let mut found = false;
        let mut i = 0;
        while i < GATE_PIDS {
            found |= (i as u32) < self.target_count && self.target_pids[i] == pid;
            i += 1;
        }
        Some(found)
    }
}

impl Window {
    /// Nothing counts and nothing is recorded.
    pub const CLOSED: Self = Self { start_ns: 0, end_ns: 0 };
    /// Not open yet, but about to be: nothing counts, and the off-CPU
    /// program already records switch-outs, so a thread asleep when the
    /// window opens is charged from the start of the window.
    pub const ARMED: Self = Self { start_ns: u64::MAX, end_ns: u64::MAX };

    /// Whether an event at `now_ns` counts.
    pub const fn contains(&self, now_ns: u64) -> bool {
        self.start_ns <= now_ns && now_ns < self.end_ns
    }

    /// Whether the window has ended (or is closed) at `now_ns`: from then
    /// on the kernel changes nothing, so the maps can be read at leisure.
    pub const fn is_over(&self, now_ns: u64) -> bool {
        now_ns >= self.end_ns
    }

    /// The part of `[from_ns, to_ns)` inside the window, in nanoseconds.
    pub fn overlap_ns(&self, from_ns: u64, to_ns: u64) -> u64 {
        let from = if from_ns > self.start_ns { from_ns } else { self.start_ns };
        let to = if to_ns < self.end_ns { to_ns } else { self.end_ns };
        to.saturating_sub(from)
    }
}

/// Value of [`MAP_OFFCPU_START`] (keyed by the `task_struct` address of a
/// target thread that was switched out): when and where it blocked.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffCpuStart {
    /// `bpf_ktime_get_ns()` at the switch-out.
    pub ts: u64,
    /// The aggregation key the interval is added to when the thread runs again.
    pub key: SampleKey,
}
const _: () = assert!(size_of::<OffCpuStart>() == 56);

/// Value of [`MAP_OFFCPU_COUNTS`] (keyed by [`SampleKey`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffCpuValue {
    /// Switch-outs that ended an interval at least `offcpu_min_ns` long.
    pub count: u64,
    /// Total off-CPU nanoseconds of those intervals.
    pub ns: u64,
}
const _: () = assert!(size_of::<OffCpuValue>() == 16);

/// Aggregation key of [`MAP_COUNTS`]; the value is a `u64` sample count.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// Process id (kernel tgid).
    pub pid: u32,
    /// Thread id (kernel pid).
    pub tid: u32,
    /// Key into [`MAP_STACKS`], or [`STACK_ID_NONE`] / [`STACK_ID_LOST`].
    pub user_stack_id: u64,
    /// Key into [`MAP_STACKS`], or [`STACK_ID_NONE`] / [`STACK_ID_LOST`].
    pub kernel_stack_id: u64,
    /// The thread's `comm`, NUL-padded.
    pub comm: [u8; 16],
    /// Key into [`MAP_STACKS`] of the thread's Python frames (see
    /// [`python::PY_FRAME_WORDS`]), or [`STACK_ID_NONE`] when the process
    /// is not a known Python process or the thread runs no Python code.
    pub py_stack_id: u64,
}
const _: () = assert!(size_of::<SampleKey>() == 48);

/// Value of [`MAP_STACKS`] (keyed by a 64-bit hash of the frames) and of the
/// per-CPU [`MAP_SCRATCH`] buffer the program assembles it in.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackRecord {
    /// Number of valid entries in `ips` (low byte) and, in the second byte,
    /// why the walk stopped early ([`Truncation`]; 0 for a finished walk).
    pub len: u64,
    /// Instruction pointers, innermost frame first.
    pub ips: [u64; MAX_STACK_DEPTH],
}
const _: () = assert!(size_of::<StackRecord>() == 1024);

/// Code whose native frames are stored at one address each (the table walk
/// applies it to each frame it stores): a frame in `[lo, hi)` of either range
/// is stored as `lo + 1`, which is in the range whether user space reads
/// it as a pc or, one byte back, as a return address. For a Python process
/// the ranges are the interpreter loop's (`_PyEval_EvalFrameDefault` and
/// its `.cold` part): user space puts the Python frames of each of its
/// calls in their place, so the exact pc there is never shown, and without
/// the fold almost every sample would be a new stack and a new count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fold {
    pub ranges: [(u64, u64); 2],
}

impl Fold {
    /// Nothing folded.
    pub const NONE: Fold = Fold { ranges: [(0, 0); 2] };

    /// Where frame `ip` is stored.
    #[inline(always)]
    pub fn apply(&self, ip: u64) -> u64 {
        let [(a, a_end), (b, b_end)] = self.ranges;
        // One unsigned compare per range; an empty range never holds.
        if ip.wrapping_sub(a) < a_end.wrapping_sub(a) {
            a + 1
        } else if ip.wrapping_sub(b) < b_end.wrapping_sub(b) {
            b + 1
        } else {
            ip
        }
    }
}

/// Value of [`MAP_SHORT_STACKS`]: a stack of at most [`SHORT_STACK_DEPTH`]
/// frames, laid out as the first 256 bytes of a [`StackRecord`] (so the
/// program stores it straight from its scratch record). A stack id is in
/// one of the two maps, picked by the stack's length.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ShortStackRecord {
    /// As [`StackRecord::len`].
    pub len: u64,
    /// Instruction pointers, innermost frame first.
    pub ips: [u64; SHORT_STACK_DEPTH],
}
const _: () = assert!(size_of::<ShortStackRecord>() == 256);

impl From<ShortStackRecord> for StackRecord {
    fn from(short: ShortStackRecord) -> Self {
        let mut ips = [0; MAX_STACK_DEPTH];
        ips[..SHORT_STACK_DEPTH].copy_from_slice(&short.ips);
        Self { len: short.len, ips }
    }
}

impl StackRecord {
    /// The valid frames, innermost first.
    pub fn frames(&self) -> &[u64] {
        let len = ((self.len & STACK_LEN_MASK) as usize).min(MAX_STACK_DEPTH);
        &self.ips[..len]
    }

    /// Why the walk that produced this stack stopped early, if it did.
    pub fn truncation(&self) -> Option<Truncation> {
        match Truncation::from_u8((self.len >> STACK_TRUNCATION_SHIFT) as u8) {
            Some(Truncation::Complete) => None,
            Some(t) => Some(t),
            // A reason this build does not know is still a truncation.
            None => Some(Truncation::Unsupported),
        }
    }
}

/// Bits of [`StackRecord::len`] holding the frame count.
pub const STACK_LEN_MASK: u64 = 0xff;
/// Shift of the [`Truncation`] byte in [`StackRecord::len`].
pub const STACK_TRUNCATION_SHIFT: u32 = 8;

/// Value of [`MAP_ALLOC_COUNTS`]: estimated allocations at a stack (the
/// sampled ones scaled back up to what they stand for).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocValue {
    pub objects: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<AllocValue>() == 16);

/// Key of [`MAP_LIVE_ALLOCS`]: an allocation's address in its process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LiveKey {
    pub pid: u32,
    pub _pad: u32,
    pub addr: u64,
}
const _: () = assert!(size_of::<LiveKey>() == 16);

/// Value of [`MAP_LIVE_ALLOCS`] and [`MAP_ALLOC_PENDING`]: a sampled
/// allocation, where it was made and what it stands for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveAlloc {
    pub key: SampleKey,
    pub value: AllocValue,
}
const _: () = assert!(size_of::<LiveAlloc>() == 64);

/// Indices of the per-CPU counters in [`MAP_STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Samples of target tasks that were aggregated.
    Recorded = 0,
    /// Samples dropped because [`MAP_COUNTS`] was full.
    CountsMapFull = 1,
    /// Samples whose user stack could not be read.
    UserStackLost = 2,
    /// Samples whose kernel stack could not be read.
    KernelStackLost = 3,
    /// Samples whose user stack hit [`MAX_STACK_DEPTH`] (outermost frames cut).
    UserStackTruncated = 4,
    /// Samples whose kernel stack hit [`MAX_STACK_DEPTH`].
    KernelStackTruncated = 5,
    /// Samples of the idle task (not recorded, not a loss).
    Idle = 6,
    /// Samples of tasks outside the target (not recorded, not a loss).
    Filtered = 7,
    /// Stacks read but not stored because [`MAP_STACKS`] was full or its
    /// allocation failed (the sample keeps a "lost stack" frame).
    StackStoreFailed = 8,
    /// Off-CPU intervals aggregated.
    OffCpuRecorded = 9,
    /// Off-CPU intervals dropped: [`MAP_OFFCPU_COUNTS`] full.
    OffCpuCountsMapFull = 10,
    /// Switch-outs not tracked: [`MAP_OFFCPU_START`] full.
    OffCpuStartMapFull = 11,
    /// Off-CPU intervals shorter than the minimum (not a loss).
    OffCpuShort = 12,
    /// Page-fault samples aggregated.
    FaultRecorded = 13,
    /// Page-fault samples dropped: [`MAP_FAULT_COUNTS`] full.
    FaultCountsMapFull = 14,
    /// Allocation samples aggregated.
    AllocRecorded = 15,
    /// Allocation samples dropped: [`MAP_ALLOC_COUNTS`] full.
    AllocCountsMapFull = 16,
    /// Sampled allocations left out of the in-use view: [`MAP_LIVE_ALLOCS`]
    /// full.
    LiveAllocsFull = 17,
    /// Sampled allocations left out of the in-use view: [`MAP_ALLOC_PENDING`]
    /// full, or the allocator returned NULL.
    AllocPendingLost = 18,
    /// Sampled allocations freed inside the window (not a loss).
    LiveFreed = 19,
    /// User stacks walked to their end with unwind tables alone.
    UnwindTables = 20,
    /// User stacks that needed frame pointers for at least one frame (code
    /// without a table, or a process whose mappings were not loaded yet).
    UnwindFellBack = 21,
    /// ... of which: the whole stack, because the process was not known yet.
    UnwindProcessUnknown = 22,
    /// User stacks that end in a `[truncated]` frame, by reason
    /// ([`Truncation`]): no rule for a pc,
    TruncNoRule = 23,
    /// a rule the unwinder does not evaluate,
    TruncUnsupported = 24,
    /// stack memory that could not be read,
    TruncReadFailed = 25,
    /// a frame that made no progress,
    TruncBadFrame = 26,
    /// more than [`MAX_STACK_DEPTH`] frames,
    TruncDepth = 27,
    /// code without a table under `--unwind tables`.
    TruncNoTable = 28,
    /// Requests to user space (new process, unknown pc) lost: ring buffer full.
    UnwindEventsLost = 29,
    /// Python stacks walked and stored (samples of Python threads).
    PyStacks = 30,
    /// Python stacks cut at [`python::PY_MAX_FRAMES`] (outermost frames lost).
    PyStackTruncated = 31,
    /// Python stacks that could not be stored (the sample keeps its native
    /// stack only).
    PyStackLost = 32,
    /// User stacks walked with the tables (whatever their outcome).
    UnwindWalks = 33,
    /// Frames those walks stored, summed: with [`Stat::UnwindWalks`], how
    /// deep the stacks were, which is what a walk's cost follows.
    UnwindWalkFrames = 34,
    /// Of [`Stat::UnwindWalks`], those that took their outer frames from
    /// the thread's last walk (its stack base, unchanged) instead of
    /// walking them again.
    UnwindBaseReused = 35,
}

impl Stat {
    pub const COUNT: u32 = 36;
    pub const ALL: [Stat; Self::COUNT as usize] = [
        Stat::Recorded,
        Stat::CountsMapFull,
        Stat::UserStackLost,
        Stat::KernelStackLost,
        Stat::UserStackTruncated,
        Stat::KernelStackTruncated,
        Stat::Idle,
        Stat::Filtered,
        Stat::StackStoreFailed,
        Stat::OffCpuRecorded,
        Stat::OffCpuCountsMapFull,
        Stat::OffCpuStartMapFull,
        Stat::OffCpuShort,
        Stat::FaultRecorded,
        Stat::FaultCountsMapFull,
        Stat::AllocRecorded,
        Stat::AllocCountsMapFull,
        Stat::LiveAllocsFull,
        Stat::AllocPendingLost,
        Stat::LiveFreed,
        Stat::UnwindTables,
        Stat::UnwindFellBack,
        Stat::UnwindProcessUnknown,
        Stat::TruncNoRule,
        Stat::TruncUnsupported,
        Stat::TruncReadFailed,
        Stat::TruncBadFrame,
        Stat::TruncDepth,
        Stat::TruncNoTable,
        Stat::UnwindEventsLost,
        Stat::PyStacks,
        Stat::PyStackTruncated,
        Stat::PyStackLost,
        Stat::UnwindWalks,
        Stat::UnwindWalkFrames,
        Stat::UnwindBaseReused,
    ];

    /// The counter of stacks truncated for `reason`.
    pub const fn truncated(reason: Truncation) -> Option<Stat> {
        Some(match reason {
            Truncation::Complete => return None,
            Truncation::NoRule => Stat::TruncNoRule,
            Truncation::Unsupported => Stat::TruncUnsupported,
            Truncation::ReadFailed => Stat::TruncReadFailed,
            Truncation::BadFrame => Stat::TruncBadFrame,
            Truncation::Depth => Stat::TruncDepth,
            Truncation::NoTable => Stat::TruncNoTable,
        })
    }
}

/// Capacity of [`MAP_STATS`].
pub const STATS_MAP_ENTRIES: u32 = Stat::COUNT;

#[cfg(test)]
mod tests {
    use super::{
        Fold, Gate, ShortStackRecord, StackRecord, Truncation, Window, GATE_PIDS, GATE_PIDS_IN_MAP, SHORT_STACK_DEPTH,
        STACK_TRUNCATION_SHIFT,
    };

    /// A folded frame stays in its range read either way (as a pc, or as a
    /// return address one byte back); frames outside, and every frame
    /// under `Fold::NONE`, are stored as they are.
    #[test]
    fn a_folded_frame_stays_in_its_range() {
        let fold = Fold { ranges: [(0x5000, 0x9000), (0x20_0000, 0x20_0400)] };
        for ip in [0x5000, 0x5001, 0x7abc, 0x8fff] {
            assert_eq!(fold.apply(ip), 0x5001);
        }
        for ip in [0x20_0000, 0x20_03ff] {
            assert_eq!(fold.apply(ip), 0x20_0001);
        }
        for ip in [0, 0x4fff, 0x9000, 0x1f_ffff, 0x20_0400, u64::MAX] {
            assert_eq!(fold.apply(ip), ip);
            assert_eq!(Fold::NONE.apply(ip), ip);
        }
        let (lo, hi) = fold.ranges[0];
        let stored = fold.apply(0x6000);
        assert!((lo..hi).contains(&stored) && (lo..hi).contains(&(stored - 1)));
        // An absent `.cold` part (0, 0) folds nothing.
        let no_cold = Fold { ranges: [(0x5000, 0x9000), (0, 0)] };
        assert_eq!(no_cold.apply(0), 0);
        assert_eq!(no_cold.apply(0x10), 0x10);
    }

    /// The program stores a short stack from the first 256 bytes of its
    /// scratch `StackRecord`: read back, it is the same stack.
    #[test]
    fn a_short_record_is_the_head_of_a_full_one() {
        let mut full = StackRecord { len: 0, ips: [0; super::MAX_STACK_DEPTH] };
        for (i, ip) in full.ips.iter_mut().enumerate() {
            *ip = 0x1000 + i as u64;
        }
        full.len = SHORT_STACK_DEPTH as u64 | (Truncation::ReadFailed as u64) << STACK_TRUNCATION_SHIFT;
        // SAFETY: both are plain `repr(C)` words, and a `StackRecord` is
        // larger: the head is read as the program's map update reads it.
        let short: ShortStackRecord = unsafe { core::ptr::read((&raw const full).cast()) };
        let back = StackRecord::from(short);
        assert_eq!(back.frames(), full.frames());
        assert_eq!(back.frames().len(), SHORT_STACK_DEPTH);
        assert_eq!(back.truncation(), Some(Truncation::ReadFailed));
        assert!(back.ips[SHORT_STACK_DEPTH..].iter().all(|&ip| ip == 0));
    }

    #[test]
    fn a_gate_holds_a_small_pid_set_in_place_and_sends_a_larger_one_to_the_map() {
        let window = Window { start_ns: 1, end_ns: 2 };
        let small = Gate::new(window, &[7, 9]);
        assert_eq!(small.window, window);
        assert_eq!((small.holds(7), small.holds(9), small.holds(8)), (Some(true), Some(true), Some(false)));
        // Slots past the count hold 0, which is no process.
        assert_eq!(small.holds(0), Some(false));
        let empty = Gate::new(window, &[]);
        assert_eq!(empty.holds(7), Some(false));
        let full: [u32; GATE_PIDS] = core::array::from_fn(|i| 100 + i as u32);
        let gate = Gate::new(window, &full);
        assert!(full.iter().all(|&p| gate.holds(p) == Some(true)));
        assert_eq!(gate.holds(99), Some(false));
        let more: [u32; GATE_PIDS + 1] = core::array::from_fn(|i| 100 + i as u32);
        let gate = Gate::new(window, &more);
        assert_eq!(gate.target_count, GATE_PIDS_IN_MAP);
        assert_eq!(gate.holds(100), None, "the map says");
    }

    #[test]
    fn window_bounds() {
        let w = Window { start_ns: 100, end_ns: 200 };
        assert!(!w.contains(99) && w.contains(100) && w.contains(199) && !w.contains(200));
        assert!(!w.is_over(199) && w.is_over(200));
        assert_eq!(w.overlap_ns(50, 150), 50, "clipped at the start");
        assert_eq!(w.overlap_ns(150, 250), 50, "clipped at the end");
        assert_eq!(w.overlap_ns(0, u64::MAX), 100, "spans the whole window");
        assert_eq!(w.overlap_ns(10, 90), 0, "before the window");
        assert_eq!(w.overlap_ns(210, 300), 0, "after the window");
        for closed in [Window::CLOSED, Window::ARMED] {
            assert!(!closed.contains(0) && !closed.contains(12345) && !closed.contains(u64::MAX - 1));
            assert_eq!(closed.overlap_ns(0, u64::MAX), 0);
        }
        assert!(Window::CLOSED.is_over(0) && !Window::ARMED.is_over(u64::MAX - 1));
    }

    #[test]
    fn go_size_classes_are_consistent() {
        // Every span holds at least one object of its class.
        for (size, pages) in super::GO_CLASS_TO_SIZE.iter().zip(super::GO_CLASS_TO_NPAGES).skip(1) {
            assert!(u32::from(pages) * 8192 >= u32::from(*size));
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each is `#[repr(C)]` and holds only integers, with no implicit
    // padding (sizes asserted above), so any bit pattern is valid.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SampleKey {}
    unsafe impl aya::Pod for super::StackRecord {}
    unsafe impl aya::Pod for super::ShortStackRecord {}
    unsafe impl aya::Pod for super::OffCpuStart {}
    unsafe impl aya::Pod for super::OffCpuValue {}
    unsafe impl aya::Pod for super::AllocValue {}
    unsafe impl aya::Pod for super::LiveKey {}
    unsafe impl aya::Pod for super::LiveAlloc {}
    unsafe impl aya::Pod for super::Window {}
    unsafe impl aya::Pod for super::Gate {}
    unsafe impl aya::Pod for super::HistoryRecord {}
    unsafe impl aya::Pod for super::python::PyOffsets {}
    unsafe impl aya::Pod for super::python::PyProcInfo {}
}
