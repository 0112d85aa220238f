//! Every map of the object, the loader-set [`CONFIG`], and the capture
//! window every program checks first. Capacities are `profiler_common`
//! constants, each with the reason for its size.

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use profiler_common::unwind::{
    ExecTable, NotifyState, ProcMappings, UnwindPage, UnwindRule, UNWIND_EVENTS_BYTES, UNWIND_EXECS_ENTRIES,
    UNWIND_NOTIFIED_ENTRIES, UNWIND_PAGES_ENTRIES, UNWIND_PROCS_ENTRIES, UNWIND_ROWS_ENTRIES, UNWIND_RULES_ENTRIES,
};
use profiler_common::{
    python::{PyProcInfo, PY_CODE_READ_MAX, PY_PROCS_MAP_ENTRIES},
    AllocValue, Config, Gate, LiveAlloc, LiveKey, OffCpuStart, OffCpuValue, SampleKey, ShortStackRecord, StackRecord,
    Window, ALLOC_COUNTS_MAP_ENTRIES, ALLOC_PENDING_MAP_ENTRIES, COUNTS_MAP_ENTRIES, FAULT_COUNTS_MAP_ENTRIES,
    LIVE_ALLOCS_MAP_ENTRIES, OFFCPU_COUNTS_MAP_ENTRIES, OFFCPU_START_MAP_ENTRIES, SHORT_STACKS_MAP_ENTRIES,
    STACKS_MAP_ENTRIES, STATS_MAP_ENTRIES, TARGET_PIDS_MAP_ENTRIES,
};
use profiler_common::{HistoryStat, HISTORY_RING_BYTES};

/// Written by the loader before the program is loaded (see `Config`).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::all();

/// The loader-set configuration.
#[inline(always)]
pub(crate) fn config() -> Config {
    // SAFETY: CONFIG is a read-only global the loader fills before load.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// `BPF_F_NO_PREALLOC`: stacks and sample counts only cost memory once
/// seen (the loader primes the per-CPU element caches before attaching).
const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
pub(crate) static STACKS: HashMap<u64, StackRecord> = HashMap::with_max_entries(STACKS_MAP_ENTRIES, BPF_F_NO_PREALLOC);

/// Stacks of at most `SHORT_STACK_DEPTH` frames: a new one costs a
/// quarter of the copy and the allocation of a `STACKS` element.
#[map]
pub(crate) static SHORT_STACKS: HashMap<u64, ShortStackRecord> =
    HashMap::with_max_entries(SHORT_STACKS_MAP_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
pub(crate) static COUNTS: HashMap<SampleKey, u64> = HashMap::with_max_entries(COUNTS_MAP_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
pub(crate) static TARGET_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(TARGET_PIDS_MAP_ENTRIES, 0);

#[map]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_MAP_ENTRIES, 0);

#[map]
pub(crate) static OFFCPU_START: HashMap<u64, OffCpuStart> = HashMap::with_max_entries(OFFCPU_START_MAP_ENTRIES, 0);

#[map]
pub(crate) static OFFCPU_COUNTS: HashMap<SampleKey, OffCpuValue> =
    HashMap::with_max_entries(OFFCPU_COUNTS_MAP_ENTRIES, 0);

#[map]
pub(crate) static FAULT_COUNTS: HashMap<SampleKey, u64> = HashMap::with_max_entries(FAULT_COUNTS_MAP_ENTRIES, 0);

#[map]
pub(crate) static ALLOC_COUNTS: HashMap<SampleKey, AllocValue> = HashMap::with_max_entries(ALLOC_COUNTS_MAP_ENTRIES, 0);

#[map]
pub(crate) static LIVE_ALLOCS: HashMap<LiveKey, LiveAlloc> =
    HashMap::with_max_entries(LIVE_ALLOCS_MAP_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
pub(crate) static ALLOC_PENDING: HashMap<u32, LiveAlloc> =
    HashMap::with_max_entries(ALLOC_PENDING_MAP_ENTRIES, BPF_F_NO_PREALLOC);

/// Flight-recorder samples on their way to user space (see `history`).
#[map]
pub(crate) static HISTORY: RingBuf = RingBuf::with_byte_size(HISTORY_RING_BYTES, 0);

/// Flight-recorder counters, by `HistoryStat`.
#[map]
pub(crate) static HISTORY_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(HistoryStat::COUNT, 0);

/// The capture window and a small target's pids; all zeros (closed, no
/// pids) until user space writes it.
#[map]
static WINDOW: Array<Gate> = Array::with_max_entries(1, 0);

/// Per-CPU byte countdown to the next `malloc` sample.
#[map]
pub(crate) static MALLOC_COUNTDOWN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU buffer a stack is assembled in; too large for the 512-byte BPF
/// stack.
#[map]
pub(crate) static SCRATCH: PerCpuArray<StackRecord> = PerCpuArray::with_max_entries(1, 0);

// The unwind tables (`profiler_common::unwind`), written by user space's
// table manager and read by the table-driven walk (`crate::unwind`).

/// `BPF_F_MMAPABLE`: user space writes tables with one copy, not one
/// syscall per element.
const BPF_F_MMAPABLE: u32 = 1 << 10;

#[map]
pub(crate) static UNWIND_RULES: Array<UnwindRule> = Array::with_max_entries(UNWIND_RULES_ENTRIES, BPF_F_MMAPABLE);

/// Two rows per element (see `profiler_common::unwind`).
#[map]
pub(crate) static UNWIND_ROWS: Array<u64> = Array::with_max_entries(UNWIND_ROWS_ENTRIES, BPF_F_MMAPABLE);

#[map]
pub(crate) static UNWIND_PAGES: Array<UnwindPage> = Array::with_max_entries(UNWIND_PAGES_ENTRIES, BPF_F_MMAPABLE);

#[map]
pub(crate) static UNWIND_EXECS: Array<ExecTable> = Array::with_max_entries(UNWIND_EXECS_ENTRIES, 0);

/// `BPF_F_NO_PREALLOC`: a process's mappings cost memory only once loaded.
#[map]
pub(crate) static UNWIND_PROCS: HashMap<u32, ProcMappings> =
    HashMap::with_max_entries(UNWIND_PROCS_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
pub(crate) static UNWIND_EVENTS: RingBuf = RingBuf::with_byte_size(UNWIND_EVENTS_BYTES, 0);

/// Per process, when it last asked user space and how often in a row.
#[map]
pub(crate) static UNWIND_NOTIFIED: LruHashMap<u32, NotifyState> =
    LruHashMap::with_max_entries(UNWIND_NOTIFIED_ENTRIES, 0);

/// This CPU's walk in progress (see `crate::walk::Walk`).
#[map]
pub(crate) static UNWIND_WALK: PerCpuArray<crate::walk::Walk> = PerCpuArray::with_max_entries(1, 0);

/// Threads kept in [`THREAD_BASES`]: the ones sampled most recently.
/// 2.5 KiB each, preallocated: 0.65 MiB.
const THREAD_BASES_ENTRIES: u32 = 256;

/// Per thread, its last complete table walk (see `crate::walk::ThreadBase`).
#[map]
pub(crate) static THREAD_BASES: LruHashMap<u32, crate::walk::ThreadBase> =
    LruHashMap::with_max_entries(THREAD_BASES_ENTRIES, 0);

/// This CPU's walk as it goes, in the form it is kept in [`THREAD_BASES`].
#[map]
pub(crate) static BASE_BUILD: PerCpuArray<crate::walk::ThreadBase> = PerCpuArray::with_max_entries(1, 0);

/// Bytes of stack a walk that met its base copies to compare (the frames
/// from `main` or a thread's entry down usually take a few hundred).
pub(crate) const BASE_STACK_BYTES: usize = 4096;
pub(crate) const BASE_STACK_WORDS: usize = BASE_STACK_BYTES / 8;

/// This CPU's copy of the stack under a frame where a walk met its base.
#[map]
pub(crate) static BASE_STACK: PerCpuArray<[u64; BASE_STACK_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// Python processes of the capture, by tgid (filled by user space).
#[map]
pub(crate) static PY_PROCS: HashMap<u32, PyProcInfo> = HashMap::with_max_entries(PY_PROCS_MAP_ENTRIES, 0);

/// Words of each [`PyScratch`] buffer.
pub(crate) const PY_SCRATCH_WORDS: usize = PY_CODE_READ_MAX / 8 + 1;

/// Room for one frame and one code object header, read whole (one helper
/// call each) and picked apart at the version's offsets, a word at a time
/// (word-sized buffers: no unaligned reads, no temporaries on the stack).
#[repr(C)]
pub(crate) struct PyScratch {
    pub frame: [u64; PY_SCRATCH_WORDS],
    pub code: [u64; PY_SCRATCH_WORDS],
}

#[map]
pub(crate) static PY_SCRATCH: PerCpuArray<PyScratch> = PerCpuArray::with_max_entries(1, 0);

/// The capture window as it is now.
#[inline(always)]
pub(crate) fn window() -> Window {
    match WINDOW.get_ptr(0) {
        // SAFETY: pointer to the map's only value; user space rewrites
        // it as a whole, and each field is read once.
        Some(g) => unsafe { core::ptr::read_volatile(&raw const (*g).window) },
        None => Window::CLOSED,
    }
}

/// Whether the gate's pid set holds `tgid`: `None` when the set is too
/// large to be held there (or the map is missing).
#[inline(always)]
pub(crate) fn gate_holds(tgid: u32) -> Option<bool> {
    // SAFETY: as above; a compare racing a rewrite sees the old or the
    // new set's pid in each slot.
    WINDOW.get_ptr(0).and_then(|g| unsafe { (*g).holds(tgid) })
}

/// `CLOCK_MONOTONIC` now, the clock of the window.
#[inline(always)]
pub(crate) fn now_ns() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// Whether an event happening now counts.
#[inline(always)]
pub(crate) fn in_window() -> bool {
    window().contains(now_ns())
}
