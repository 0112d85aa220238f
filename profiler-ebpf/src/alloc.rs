//! Allocations, through uprobes: C `malloc`, `calloc` and `realloc`,
//! sampled by bytes, and the Go runtime's allocation slow paths, which are
//! samples by nature.
//!
//! The in-use view: a sampled C allocation is also remembered, by address,
//! in `LIVE_ALLOCS` (its entry probe parks it in `ALLOC_PENDING` for the
//! thread, the return probe, `alloc_return`, adds the address), and `free`
//! (or `realloc` moving it) deletes it. What is left when the window ends
//! was allocated inside the window and not freed by its end. Only sampled
//! allocations are remembered, so the map holds about one entry per
//! sampling period of memory still held; every call to `free` pays one
//! hash lookup (see docs/benchmarks.md). Go's heap has no probe on its
//! frees (the garbage collector sweeps in bulk), so it has no in-use view.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_attach_cookie, bpf_get_prandom_u32},
    },
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use aya_log_ebpf::warn;
use profiler_common::{
    AllocValue, LiveAlloc, LiveKey, SampleKey, Stat, GO_CLASS_TO_NPAGES, GO_CLASS_TO_SIZE, GO_PROBE_ALLOC_LARGE,
};

use crate::count;
use crate::filter::wanted;
use crate::key::entry_key;
use crate::maps::{config, in_window, ALLOC_COUNTS, ALLOC_PENDING, LIVE_ALLOCS, MALLOC_COUNTDOWN};
use crate::stats::bump;

/// Sample points inside one allocation counted one by one; past this many
/// (an allocation of over ~16 periods) the rest are counted at the mean
/// spacing.
const MAX_POINTS_COUNTED: u32 = 16;

/// Whether a call now, by the current task, is to be looked at.
#[inline(always)]
fn counts_now() -> bool {
    in_window() && wanted((bpf_get_current_pid_tgid() >> 32) as u32)
}

/// Bytes from one sampled byte to the next: uniform in `[1, 2 * period]`,
/// so the mean is `period` (each sample stands for `period` bytes) but
/// there is no fixed stride. With a fixed stride a regular allocation
/// pattern falls into step with the sampler: a loop allocating 64 KiB
/// through call sites A, A, A, B with a 512 KiB period puts every sample
/// on the same site, and the other site vanishes from the profile.
#[inline(always)]
fn next_gap(period: u64) -> u64 {
    let span = period.saturating_mul(2).min(1 << 32);
    // SAFETY: plain helper call.
    let r = u64::from(unsafe { bpf_get_prandom_u32() });
    1 + ((r * span) >> 32)
}

/// `malloc(size)`: sampled by bytes. Sample points are laid on the stream
/// of bytes a CPU's target processes allocate, a random gap of mean
/// `malloc_sample_bytes` apart (see `next_gap`); a per-CPU countdown holds
/// the distance to the next one. An allocation holding sample points is
/// sampled and stands for `period` bytes per point (and `bytes / size`
/// objects). Unsampled calls skip the stack walk and map update, but every
/// call pays the uprobe trap itself (see docs/benchmarks.md).
#[inline(always)]
pub(crate) fn malloc_entry(ctx: &ProbeContext) -> u32 {
    let size: u64 = ctx.arg(0).unwrap_or(0);
    sample_bytes(ctx, size)
}

/// `calloc(n, size)`: `n * size` bytes, sampled as `malloc`'s (glibc's
/// `calloc` does not call `malloc`, so nothing is counted twice).
#[inline(always)]
pub(crate) fn calloc_entry(ctx: &ProbeContext) -> u32 {
    let n: u64 = ctx.arg(0).unwrap_or(0);
    let size: u64 = ctx.arg(1).unwrap_or(0);
    // BPF has no 128-bit multiply, which an overflow check compiles to: a
    // count or an element size of 4 Gi or more (a `calloc` that fails, in
    // practice) is left unsampled instead, and the product of the rest fits.
    if n >> 32 != 0 || size >> 32 != 0 {
        return 0;
    }
    sample_bytes(ctx, n * size)
}

/// `realloc(ptr, size)`: the old block is no longer held (a `realloc`
/// that fails keeps it, which this cannot see), the new one is an
/// allocation of `size`. `realloc(NULL, size)` is left to the `malloc`
/// probe, since glibc calls `malloc` for it.
#[inline(always)]
pub(crate) fn realloc_entry(ctx: &ProbeContext) -> u32 {
    let ptr: u64 = ctx.arg(0).unwrap_or(0);
    let size: u64 = ctx.arg(1).unwrap_or(0);
    if ptr == 0 {
        return 0;
    }
    forget(ptr);
    sample_bytes(ctx, size)
}

/// `free(ptr)`: a sampled allocation at `ptr` is no longer held.
#[inline(always)]
pub(crate) fn free_entry(ctx: &ProbeContext) -> u32 {
    let ptr: u64 = ctx.arg(0).unwrap_or(0);
    if ptr != 0 {
        forget(ptr);
    }
    0
}

/// Return of `malloc`, `calloc`, `realloc`: the address of the allocation
/// this thread's entry probe sampled, remembered as held. Not limited to
/// the window: an allocation sampled inside it whose call returns just
/// after still counts.
#[inline(always)]
pub(crate) fn alloc_return(ctx: &RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: read once and copied out before the delete.
    let Some(pending) = (unsafe { ALLOC_PENDING.get(&tid) }).copied() else { return 0 };
    let _ = ALLOC_PENDING.remove(&tid);
    let addr: u64 = ctx.ret();
    if addr == 0 {
        bump(Stat::AllocPendingLost);
        return 0;
    }
    let key = LiveKey { pid: (pid_tgid >> 32) as u32, _pad: 0, addr };
    if LIVE_ALLOCS.insert(&key, &pending, 0).is_err() && bump(Stat::LiveAllocsFull) == 0 {
        warn!(ctx, "in-use allocation map full: later allocations are missing from the in-use view (counted)");
    }
    0
}

/// Drops a held allocation at `ptr` of the current process, if it was one.
#[inline(always)]
fn forget(ptr: u64) {
    if !in_window() {
        return;
    }
    let key = LiveKey { pid: (bpf_get_current_pid_tgid() >> 32) as u32, _pad: 0, addr: ptr };
    if LIVE_ALLOCS.remove(&key).is_ok() {
        bump(Stat::LiveFreed);
    }
}

/// Samples an allocation of `size` bytes by bytes; a sampled one is
/// counted and parked for its return probe.
#[inline(always)]
fn sample_bytes(ctx: &ProbeContext, size: u64) -> u32 {
    if size == 0 || !counts_now() {
        return 0;
    }
    let period = config().malloc_sample_bytes.max(1);
    let Some(left) = MALLOC_COUNTDOWN.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's slot; uprobe programs do not nest on one CPU.
    let mut remaining = unsafe { *left };
    if remaining == 0 {
        // This CPU's first allocation: start anywhere in a gap.
        remaining = next_gap(period);
    }
    if size < remaining {
        // SAFETY: as above.
        unsafe { *left = remaining - size };
        return 0;
    }
    // The first point is `remaining` bytes in; count the further ones.
    let mut at = remaining;
    let mut crossed: u64 = 1;
    let mut gap = next_gap(period);
    let mut i = 0;
    while i < MAX_POINTS_COUNTED && at + gap <= size {
        at += gap;
        crossed += 1;
        gap = next_gap(period);
        i += 1;
    }
    if at + gap <= size {
        crossed += (size - at) / period;
        at = size;
        gap = next_gap(period);
    }
    // SAFETY: as above.
    unsafe { *left = at + gap - size };
    let bytes = crossed * period;
    let objects = (bytes / size).max(1);
    let value = AllocValue { objects, bytes };
    if let Some(key) = record(ctx, value) {
        let tid = bpf_get_current_pid_tgid() as u32;
        if ALLOC_PENDING.insert(&tid, &LiveAlloc { key, value }, 0).is_err() {
            bump(Stat::AllocPendingLost);
        }
    }
    0
}

/// The Go runtime's allocation slow paths (see `GO_PROBE_REFILL` and
/// `GO_PROBE_ALLOC_LARGE`): a span refill stands for the span's bytes and
/// objects, a large allocation for itself.
#[inline(always)]
pub(crate) fn go_alloc(ctx: &ProbeContext) -> u32 {
    if !counts_now() {
        return 0;
    }
    // SAFETY: plain helper call; `regs` is the probe's register set.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let rbx = unsafe { core::ptr::read_volatile(&(*ctx.regs).rbx) };
    let (objects, bytes) = if cookie == GO_PROBE_ALLOC_LARGE {
        (1, rbx)
    } else {
        // No indexing or division that could panic: a panic path leaves
        // the verifier a program that does not end in `exit`.
        let class = ((rbx & 0xff) >> 1) as usize;
        let (Some(&size), Some(&pages)) = (GO_CLASS_TO_SIZE.get(class), GO_CLASS_TO_NPAGES.get(class)) else {
            return 0;
        };
        let (size, span) = (size as u64, pages as u64 * 8192);
        (span.checked_div(size).unwrap_or(0), span)
    };
    if bytes == 0 {
        return 0;
    }
    record(ctx, AllocValue { objects, bytes });
    0
}

/// Adds an allocation sample at the calling stack; its key, unless the
/// count map was full.
#[inline(always)]
fn record(ctx: &ProbeContext, value: AllocValue) -> Option<SampleKey> {
    let key = entry_key(ctx);
    if count::add(&ALLOC_COUNTS, &key, value).is_err() {
        if bump(Stat::AllocCountsMapFull) == 0 {
            warn!(ctx, "allocation map full: later allocation samples are lost (counted)");
        }
        return None;
    }
    bump(Stat::AllocRecorded);
    Some(key)
}
