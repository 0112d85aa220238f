//! The flight recorder (`watch --history`): a low-rate CPU sample of the
//! target, sent whole to user space through the `HISTORY` ring buffer.
//!
//! It runs beside captures, not inside them: it ignores the capture window,
//! never touches `STACKS`, the count maps or `STATS` (its own counters are
//! in `HISTORY_STATS`), so a capture's counts are the same with or without
//! it; and it is loaded and attached only when the recorder is configured.
//! Both stacks are read straight into the reserved record, so a sample
//! costs two `bpf_get_stack` calls and no map update.

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_current_task, bpf_get_stack},
    },
    programs::PerfEventContext,
    EbpfContext,
};
use profiler_common::{HistoryRecord, HistoryStat, HISTORY_RING_BYTES, MAX_STACK_DEPTH};

use crate::filter::wanted;
use crate::maps::{config, HISTORY, HISTORY_STATS};
use crate::perf::in_kernel;

/// A flight-recorder sample.
#[inline(always)]
pub(crate) fn history_sample(ctx: &PerfEventContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tid == 0 || !wanted(tgid) {
        return 0;
    }
    let Some(mut entry) = HISTORY.reserve::<HistoryRecord>(0) else {
        bump(HistoryStat::Lost);
        return 0;
    };
    let record = entry.as_mut_ptr();
    let start = process_start_ns();
    let bytes = (MAX_STACK_DEPTH * 8) as u32;
    // SAFETY: `record` is the reserved, exclusively owned entry; every
    // field is written before it is submitted, and each `bpf_get_stack`
    // writes at most `bytes`, the size of the array it is given.
    unsafe {
        (*record).pid = tgid;
        (*record).tid = tid;
        (*record).comm = bpf_get_current_comm().unwrap_or_default();
        (*record).start_ns = start;
        let user = bpf_get_stack(ctx.as_ptr(), (*record).user.as_mut_ptr().cast(), bytes, BPF_F_USER_STACK as u64);
        (*record).user_len = if user > 0 { (user / 8) as u32 } else { 0 };
        (*record).kernel_len = 0;
        if in_kernel(ctx) {
            let kernel = bpf_get_stack(ctx.as_ptr(), (*record).kernel.as_mut_ptr().cast(), bytes, 0);
            (*record).kernel_len = if kernel > 0 { (kernel / 8) as u32 } else { 0 };
        }
    }
    // User space drains the buffer once a second: no wake-up per sample
    // (at 19 Hz on every CPU that was the recorder's loop running dozens
    // of times a second), unless the buffer is half full (a high
    // `--history-frequency`), so nothing is lost waiting for the second.
    let pending = HISTORY.query(BPF_RB_AVAIL_DATA as u64);
    let wake = if pending >= u64::from(HISTORY_RING_BYTES / 2) { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    entry.submit(wake as u64);
    bump(HistoryStat::Sent);
    0
}

/// The current process's start (its leader's `start_boottime`), or 0 when
/// the loader found no offsets for it.
#[inline(always)]
fn process_start_ns() -> u64 {
    let config = config();
    let (leader_off, start_off) = (config.task_group_leader_offset, config.task_start_boottime_offset);
    if leader_off == 0 || start_off == 0 {
        return 0;
    }
    // SAFETY: plain helper call; the pointers are only read through the
    // checked kernel-read helper.
    unsafe {
        let task = bpf_get_current_task();
        let Ok(leader) = bpf_probe_read_kernel((task + u64::from(leader_off)) as *const u64) else { return 0 };
        bpf_probe_read_kernel((leader + u64::from(start_off)) as *const u64).unwrap_or(0)
    }
}

fn bump(stat: HistoryStat) {
    if let Some(slot) = HISTORY_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: this CPU's slot of a per-CPU array; perf-event programs
        // do not nest on one CPU.
        unsafe { *slot += 1 };
    }
}
