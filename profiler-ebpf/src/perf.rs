//! Perf-event samples — the CPU clock and page faults: each sample of a
//! target task is counted under its key.

use aya_ebpf::{maps::HashMap, programs::PerfEventContext};
use profiler_common::{SampleKey, Stat};

use crate::count;
use crate::key::current_key;
use crate::maps::{in_window, COUNTS, FAULT_COUNTS};
use crate::stats::bump;
use crate::unwind::RegsAt;

/// A CPU-clock sample.
#[inline(always)]
pub(crate) fn cpu_sample(ctx: &PerfEventContext) -> Result<u32, u32> {
    count_sample(ctx, &COUNTS, Stat::Recorded, Stat::CountsMapFull)
}

/// A page fault of a target task (the event is sampled every N faults by
/// its period): the stack that touched new memory.
#[inline(always)]
pub(crate) fn fault_sample(ctx: &PerfEventContext) -> Result<u32, u32> {
    count_sample(ctx, &FAULT_COUNTS, Stat::FaultRecorded, Stat::FaultCountsMapFull)
}

#[inline(always)]
fn count_sample(
    ctx: &PerfEventContext,
    counts: &HashMap<SampleKey, u64>,
    recorded: Stat,
    full: Stat,
) -> Result<u32, u32> {
    if !in_window() {
        return Ok(0);
    }
    // The task's user registers are where its entry into the kernel saved
    // them (`task_pt_regs`) whether the event interrupted user code (the
    // interrupt's entry from user mode saved them there, and the context
    // holds a copy) or kernel code. One source, not a choice between the
    // context and the task: with the choice, LLVM emitted the whole key
    // and stack walk twice, once per mode, and the verifier checked both
    // at every load (80 ms instead of 50 here).
    let Some(key) = current_key(ctx, in_kernel(ctx), RegsAt::Task) else { return Ok(0) };
    if count::add(counts, &key, 1).is_err() {
        // Counted; user space reports it after the capture (no log call:
        // see `crate::record::store_hashed`).
        bump(full);
        return Err(0);
    }
    bump(recorded);
    Ok(0)
}

/// Whether the event interrupted kernel code. When it interrupted user
/// code there is no kernel stack to read (the kernel's callchain code
/// would return none), so the helper call is skipped: for a CPU-bound
/// program that is most samples.
#[inline(always)]
pub(crate) fn in_kernel(ctx: &PerfEventContext) -> bool {
    // SAFETY: the context of a perf_event program is a
    // `bpf_perf_event_data` whose `regs` the kernel filled; reading a
    // field of it is a plain context access.
    let cs = unsafe { (*ctx.ctx).regs.cs };
    cs & 3 != 3
}
