//! The aggregation key of the current task: its ids, its `comm` and its
//! stacks (native, and for a Python process its Python frames). Events
//! with equal keys are summed in the count maps.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    programs::ProbeContext,
    EbpfContext,
};
use profiler_common::{Fold, SampleKey, Stat, STACK_ID_NONE};

use crate::filter::wanted;
use crate::python::py_stack;
use crate::stack::{kernel_stack, user_stack, UserStart};
use crate::stats::bump;
use crate::unwind::RegsAt;

/// The key of an event that interrupted the current task, with its kernel
/// stack only if `kernel` (it was in the kernel); `regs` is where its user
/// registers are. `None` for the idle task and tasks outside the target.
#[inline(always)]
pub(crate) fn current_key<C: EbpfContext>(ctx: &C, kernel: bool, regs: RegsAt) -> Option<SampleKey> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    if tid == 0 {
        bump(Stat::Idle);
        return None;
    }
    if !wanted(tgid) {
        bump(Stat::Filtered);
        return None;
    }
    let mut fold = Fold::NONE;
    let py_stack_id = py_stack(tgid, &mut fold);
    Some(SampleKey {
        pid: tgid,
        tid,
        user_stack_id: user_stack(ctx, tgid, UserStart::Interrupted, regs, fold),
        kernel_stack_id: if kernel { kernel_stack(ctx) } else { STACK_ID_NONE },
        comm: bpf_get_current_comm().unwrap_or_default(),
        py_stack_id,
    })
}

/// The key of a call at a function's entry (a uprobe): user stack only.
/// The caller has checked the target filter.
#[inline(always)]
pub(crate) fn entry_key(ctx: &ProbeContext) -> SampleKey {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: `regs` is the probe's register set.
    let sp = unsafe { (*ctx.regs).rsp };
    let tgid = (pid_tgid >> 32) as u32;
    let mut fold = Fold::NONE;
    let py_stack_id = py_stack(tgid, &mut fold);
    let regs = RegsAt::Ctx(ctx.regs.cast_const());
    SampleKey {
        pid: tgid,
        tid: pid_tgid as u32,
        user_stack_id: user_stack(ctx, tgid, UserStart::FunctionEntry { sp }, regs, fold),
        kernel_stack_id: STACK_ID_NONE,
        comm: bpf_get_current_comm().unwrap_or_default(),
        py_stack_id,
    }
}
