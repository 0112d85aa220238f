//! Off-CPU time: when a target thread is switched out, remember when and
//! where (its stacks); when it is switched in again, add the interval to
//! that stack. Threads are keyed by `task_struct` address, which needs no
//! kernel-version-specific field offsets.
//!
//! Intervals are clipped to the window: switch-outs are recorded from the
//! moment it is armed (before it opens, so a thread asleep at the start is
//! charged from the start), an interval that ends before the window opens
//! is dropped, and once the window is over nothing changes: the threads
//! still switched out are charged up to its end by user space.

use aya_ebpf::{helpers::generated::bpf_get_current_task, programs::BtfTracePointContext};
use aya_log_ebpf::warn;
use profiler_common::{OffCpuStart, OffCpuValue, Stat, Window};

use crate::count;
use crate::key::current_key;
use crate::maps::{config, now_ns, window, OFFCPU_COUNTS, OFFCPU_START};
use crate::stats::bump;
use crate::unwind::RegsAt;

/// `TASK_DEAD`: the final switch-out of an exiting task.
const TASK_DEAD: u64 = 0x80;

/// `sched_switch(bool preempt, struct task_struct *prev, struct
/// task_struct *next, unsigned int prev_state)`.
#[inline(always)]
pub(crate) fn sched_switch(ctx: &BtfTracePointContext) -> u32 {
    let next: u64 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    let now = now_ns();
    let window = window();
    if window.is_over(now) {
        return 0;
    }
    switch_in(ctx, next, now, &window);
    if prev_state & TASK_DEAD == 0 {
        // SAFETY: plain helper call; `current` is still `prev` here.
        let prev = unsafe { bpf_get_current_task() };
        switch_out(ctx, prev, now);
    }
    0
}

#[inline(always)]
fn switch_out(ctx: &BtfTracePointContext, task: u64, now: u64) {
    // A task switching out is always in the kernel (in `schedule`); its
    // user registers were saved on kernel entry.
    let Some(key) = current_key(ctx, true, RegsAt::Task) else { return };
    let start = OffCpuStart { ts: now, key };
    if OFFCPU_START.insert(&task, &start, 0).is_err() && bump(Stat::OffCpuStartMapFull) == 0 {
        warn!(ctx, "off-cpu start map full: some blocked intervals are not tracked (counted)");
    }
}

#[inline(always)]
fn switch_in(ctx: &BtfTracePointContext, task: u64, now: u64, window: &Window) {
    let Some(start) = OFFCPU_START.get_ptr(&task) else { return };
    // SAFETY: pointer to a live map value; copied out before removal.
    let start = unsafe { *start };
    let _ = OFFCPU_START.remove(&task);
    // `now` is before the window's end (checked by the caller); an
    // interval over before the window opened counts nothing.
    let delta = window.overlap_ns(start.ts, now);
    if delta == 0 {
        return;
    }
    if delta < config().offcpu_min_ns {
        bump(Stat::OffCpuShort);
        return;
    }
    if count::add(&OFFCPU_COUNTS, &start.key, OffCpuValue { count: 1, ns: delta }).is_err() {
        if bump(Stat::OffCpuCountsMapFull) == 0 {
            warn!(ctx, "off-cpu map full: later intervals are lost (counted)");
        }
        return;
    }
    bump(Stat::OffCpuRecorded);
}
