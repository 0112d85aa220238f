//! The unwind tables user space builds from `.eh_frame` / `.debug_frame`
//! and the eBPF unwinder reads: their map names, layouts and capacities.
//!
//! Layout (sized so a whole host fits in a few MiB, see `docs/architecture.md`):
//!
//! - [`MAP_UNWIND_RULES`]: every distinct [`UnwindRule`] of every loaded
//!   executable, deduplicated. A C library has a few hundred; rows name them
//!   by index.
//! - [`MAP_UNWIND_ROWS`]: rows, 4 bytes each ([`row_offset`] in a 4 KiB page
//!   and [`row_rule`] index), two to an array element. Each executable owns a
//!   contiguous range, sorted by address, page by page; every non-empty page
//!   starts with a row at offset 0, so a lookup never looks at another page.
//! - [`MAP_UNWIND_PAGES`]: one [`UnwindPage`] per 4 KiB of an executable's
//!   text: where its rows are. A lookup is two array reads and a binary
//!   search over the rows of one page (at most [`ROW_SEARCH_STEPS`] probes).
//! - [`MAP_UNWIND_EXECS`]: one [`ExecTable`] per loaded executable file
//!   (shared by every process that maps it), indexed by its exec id.
//! - [`MAP_UNWIND_PROCS`]: per process, its executable mappings sorted by
//!   address ([`ProcMappings`]), each naming an exec id (or none: frame
//!   pointers) and the load bias that turns a pc into an ELF address.
//! - [`MAP_UNWIND_EVENTS`]: the program asks user space to (re)read a
//!   process's mappings: one it does not know, or a pc outside every known
//!   mapping (dlopen, exec). Rate-limited per process by
//!   [`MAP_UNWIND_NOTIFIED`].

use core::mem::size_of;

pub const MAP_UNWIND_RULES: &str = "UNWIND_RULES";
pub const MAP_UNWIND_ROWS: &str = "UNWIND_ROWS";
pub const MAP_UNWIND_PAGES: &str = "UNWIND_PAGES";
pub const MAP_UNWIND_EXECS: &str = "UNWIND_EXECS";
pub const MAP_UNWIND_PROCS: &str = "UNWIND_PROCS";
pub const MAP_UNWIND_EVENTS: &str = "UNWIND_EVENTS";
pub const MAP_UNWIND_NOTIFIED: &str = "UNWIND_NOTIFIED";

/// Bits of an address inside one page of [`MAP_UNWIND_PAGES`].
pub const PAGE_BITS: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_BITS;
/// Binary-search probes that find any row of a page: a page holds at most
/// `PAGE_SIZE` rows (one per byte), and `2^13 > 4096`.
pub const ROW_SEARCH_STEPS: u32 = 13;

/// Capacity of [`MAP_UNWIND_RULES`]. Distinct rules over everything loaded:
/// libc has ~300, a large Rust binary a few thousand. 8 bytes each,
/// preallocated: 256 KiB.
pub const UNWIND_RULES_ENTRIES: u32 = 32 * 1024;
/// Capacity of [`MAP_UNWIND_ROWS`] in elements (two rows each): 1 M rows,
/// 4 MiB preallocated. Measured (`cargo run --release --example
/// unwind_tables`): libc 29 k rows, libstdc++ 35 k, stackwatch itself
/// (61 MB) 129 k, node (99 MB) 378 k.
pub const UNWIND_ROWS_ENTRIES: u32 = 512 * 1024;
/// Capacity of [`MAP_UNWIND_PAGES`]: 4 KiB pages of text, 512 MiB of it,
/// 8 bytes each: 1 MiB preallocated.
pub const UNWIND_PAGES_ENTRIES: u32 = 128 * 1024;
/// Capacity of [`MAP_UNWIND_EXECS`]: executable files with a loaded table.
/// 32 bytes each: 64 KiB.
pub const UNWIND_EXECS_ENTRIES: u32 = 2048;
/// Capacity of [`MAP_UNWIND_PROCS`]: processes whose mappings are known.
/// Not preallocated; a value is ~3.9 KiB (one slab object of 4 KiB).
pub const UNWIND_PROCS_ENTRIES: u32 = 4096;
/// Bytes of [`MAP_UNWIND_EVENTS`]: 16-byte events, drained continuously.
pub const UNWIND_EVENTS_BYTES: u32 = 64 * 1024;
/// Capacity of [`MAP_UNWIND_NOTIFIED`] (an LRU: the oldest pids drop out).
pub const UNWIND_NOTIFIED_ENTRIES: u32 = 4096;
/// Time after a process's first request before it may ask again; each
/// later request waits twice as long as the one before, up to
/// [`NOTIFY_INTERVAL_NS`]. A process sampled while it starts (between
/// `exec` and the dynamic loader mapping its libraries) asks again 10 ms
/// later, not after a whole interval of stacks without tables.
pub const NOTIFY_FIRST_RETRY_NS: u64 = 10_000_000;
/// Longest time between two requests about one process (a pc that stays
/// outside every mapping: JIT code in memory mapped since).
pub const NOTIFY_INTERVAL_NS: u64 = 200_000_000;
/// A process that asked nothing for this long starts again at
/// [`NOTIFY_FIRST_RETRY_NS`] (a `dlopen` or `exec` long after start).
pub const NOTIFY_QUIET_NS: u64 = 2_000_000_000;

/// [`MAP_UNWIND_NOTIFIED`]'s value: when a process last asked, and how
/// many requests it has made in a row without a quiet time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NotifyState {
    pub last_ns: u64,
    pub streak: u32,
    pub _pad: u32,
}

impl NotifyState {
    /// How long after `last_ns` the next request may go.
    #[inline(always)]
    pub fn wait_ns(&self) -> u64 {
        // 10, 20, 40, 80, 160, then 200 ms.
        let shift = if self.streak < 5 { self.streak } else { 5 };
        let wait = NOTIFY_FIRST_RETRY_NS << shift;
        if wait < NOTIFY_INTERVAL_NS {
            wait
        } else {
            NOTIFY_INTERVAL_NS
        }
    }

    /// Whether a request may go at `now`; if so, records it.
    #[inline(always)]
    pub fn admit(&mut self, now: u64) -> bool {
        let gap = now.wrapping_sub(self.last_ns);
        if gap < self.wait_ns() {
            return false;
        }
        self.streak = if gap >= NOTIFY_QUIET_NS { 0 } else { self.streak.saturating_add(1) };
        self.last_ns = now;
        true
    }
}

/// Executable mappings kept per process. 120 keeps a value in one 4 KiB
/// slab object; mappings past it (rare: interpreters with hundreds of
/// extension modules) unwind with frame pointers.
pub const MAX_PROC_MAPPINGS: usize = 120;
/// Binary-search probes over [`MAX_PROC_MAPPINGS`] (`2^7 > 120`).
pub const MAPPING_SEARCH_STEPS: u32 = 7;

/// [`ExecMapping::exec_id`] of code without a table (anonymous/JIT memory,
/// a file without `.eh_frame`, Go): frame pointers there.
pub const EXEC_ID_NONE: u32 = u32::MAX;

/// How the caller's CFA (its stack pointer at the call) is found.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CfaKind {
    /// No unwind information covers the address (a gap between FDEs).
    None = 0,
    /// `rsp + cfa_offset`.
    Rsp = 1,
    /// `rbp + cfa_offset`.
    Rbp = 2,
    /// A PLT entry's expression: `rsp + 8`, plus 8 when `(pc & 15) >=
    /// cfa_offset` (the entry has pushed its argument).
    Plt = 3,
    /// The return address is undefined: the outermost frame (`_start`,
    /// `clone`'s thread entry). The stack is complete.
    End = 4,
    /// `__restore_rt`: the caller's registers are in the `ucontext` at `rsp`.
    Signal = 5,
    /// A rule this unwinder does not evaluate; the stack ends here, truncated.
    Unsupported = 6,
}

/// How the caller's `rbp` is found.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RbpKind {
    /// Unchanged from this frame.
    Same = 0,
    /// Saved at `CFA + rbp_offset`.
    AtCfa = 1,
    /// Somewhere this unwinder cannot follow: unknown in the caller.
    Unsupported = 2,
}

/// One unwind rule: how to get from a frame to its caller. The return
/// address is always at `CFA - 8` (rules where it is not are
/// [`CfaKind::Unsupported`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnwindRule {
    /// A [`CfaKind`].
    pub cfa_kind: u8,
    /// An [`RbpKind`].
    pub rbp_kind: u8,
    pub rbp_offset: i16,
    pub cfa_offset: i32,
}
const _: () = assert!(size_of::<UnwindRule>() == 8);

impl UnwindRule {
    /// No unwind information.
    pub const NONE: Self = Self { cfa_kind: CfaKind::None as u8, rbp_kind: 0, rbp_offset: 0, cfa_offset: 0 };
}

/// A row: `(rule index << PAGE_BITS) | offset in page`.
pub const fn make_row(offset_in_page: u32, rule: u32) -> u32 {
    (rule << PAGE_BITS) | (offset_in_page & (PAGE_SIZE as u32 - 1))
}
pub const fn row_offset(row: u32) -> u32 {
    row & (PAGE_SIZE as u32 - 1)
}
pub const fn row_rule(row: u32) -> u32 {
    row >> PAGE_BITS
}
/// Rule indices that fit in a row.
pub const MAX_RULES: u32 = 1 << (32 - PAGE_BITS);
const _: () = assert!(UNWIND_RULES_ENTRIES <= MAX_RULES);

/// Where one page's rows are in [`MAP_UNWIND_ROWS`]. `count == 0`: no
/// unwind information in this page.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindPage {
    /// Index of the page's first row (not element) in the rows map.
    pub first_row: u32,
    pub count: u32,
}
const _: () = assert!(size_of::<UnwindPage>() == 8);

/// One executable file's table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecTable {
    /// ELF address of the first page (`vaddr >> PAGE_BITS`).
    pub first_page: u64,
    /// Index of that page in [`MAP_UNWIND_PAGES`].
    pub page_index: u32,
    pub page_count: u32,
    /// Matches [`ExecMapping::tag`] while this slot holds the table the
    /// mapping was written for; a slot reused for another file gets a new
    /// tag, so a stale mapping falls back instead of reading foreign rows.
    pub tag: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns` of the last stack that used the table: what
    /// eviction orders by.
    pub last_used_ns: u64,
}
const _: () = assert!(size_of::<ExecTable>() == 32);

/// One executable mapping of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecMapping {
    pub start: u64,
    pub end: u64,
    /// `pc - bias` is the ELF virtual address.
    pub bias: u64,
    /// Index into [`MAP_UNWIND_EXECS`], or [`EXEC_ID_NONE`].
    pub exec_id: u32,
    pub tag: u32,
}
const _: () = assert!(size_of::<ExecMapping>() == 32);

/// Value of [`MAP_UNWIND_PROCS`] (keyed by tgid).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcMappings {
    /// Valid entries of `mappings`, sorted by `start`, not overlapping.
    pub count: u32,
    /// Set by the program (user space writes 0): a thread of this process
    /// had a walk deep enough to keep as its stack base, so walks of its
    /// threads look for one (others skip the lookup).
    pub deep_stacks: u32,
    pub mappings: [ExecMapping; MAX_PROC_MAPPINGS],
}
const _: () = assert!(size_of::<ProcMappings>() == 8 + 32 * MAX_PROC_MAPPINGS);

/// [`UnwindEvent::kind`]: a sampled process whose mappings are unknown.
pub const EVENT_NEW_PROCESS: u32 = 1;
/// [`UnwindEvent::kind`]: a pc outside every known mapping of a process.
pub const EVENT_UNKNOWN_PC: u32 = 2;

/// A request from the program to the table manager.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindEvent {
    pub pid: u32,
    pub kind: u32,
    pub pc: u64,
}
const _: () = assert!(size_of::<UnwindEvent>() == 16);

/// How user stacks are walked ([`crate::Config::unwind_mode`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindMode {
    /// The kernel's frame-pointer walk (`bpf_get_stack`), as before tables.
    FramePointers = 0,
    /// Tables where loaded, frame pointers elsewhere.
    Auto = 1,
    /// Tables only: code without one ends the stack (marked truncated).
    Tables = 2,
}

/// Why a walk stopped early, kept in [`crate::StackRecord::len`]'s second
/// byte ([`crate::StackRecord::truncation`]); 0 means it finished.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// The walk reached the end of the stack.
    Complete = 0,
    /// A pc inside an executable with a table but no row for it.
    NoRule = 1,
    /// A rule the unwinder does not evaluate (an unusual DWARF expression).
    Unsupported = 2,
    /// Reading the stack failed (unmapped or paged-out memory).
    ReadFailed = 3,
    /// The rules led nowhere sensible (the stack did not grow towards its base).
    BadFrame = 4,
    /// [`crate::MAX_STACK_DEPTH`] frames and more to go.
    Depth = 5,
    /// `--unwind tables` and code with no table (JIT, not loaded yet).
    NoTable = 6,
}

impl Truncation {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Complete,
            1 => Self::NoRule,
            2 => Self::Unsupported,
            3 => Self::ReadFailed,
            4 => Self::BadFrame,
            5 => Self::Depth,
            6 => Self::NoTable,
            _ => return None,
        })
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, integers only, sizes asserted above with no
    // implicit padding: any bit pattern is valid.
    unsafe impl aya::Pod for super::UnwindRule {}
    unsafe impl aya::Pod for super::UnwindPage {}
    unsafe impl aya::Pod for super::ExecTable {}
    unsafe impl aya::Pod for super::ExecMapping {}
    unsafe impl aya::Pod for super::ProcMappings {}
    unsafe impl aya::Pod for super::UnwindEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process sampled while it starts asks again 10 ms after its first
    /// request, then ever more rarely (a pc that never resolves costs at
    /// most five requests a second), and quickly again after a quiet time.
    #[test]
    fn requests_back_off_from_10_ms_to_the_interval() {
        const MS: u64 = 1_000_000;
        let start = 5_000 * MS;
        let mut s = NotifyState { last_ns: start, streak: 0, _pad: 0 };
        assert!(!s.admit(start + 9 * MS));
        assert!(s.admit(start + 10 * MS));
        let mut now = start + 10 * MS;
        let mut gaps = [0u64; 7];
        for gap in &mut gaps {
            let wait = s.wait_ns();
            assert!(!s.admit(now + wait - 1));
            now += wait;
            assert!(s.admit(now));
            *gap = wait / MS;
        }
        assert_eq!(gaps, [20, 40, 80, 160, 200, 200, 200]);
        now += NOTIFY_QUIET_NS;
        assert!(s.admit(now));
        assert_eq!(s.wait_ns(), NOTIFY_FIRST_RETRY_NS);
    }
}
