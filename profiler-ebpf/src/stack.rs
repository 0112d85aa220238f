//! The stacks of the current task: read, and each distinct one stored once
//! in `STACKS` under a 64-bit hash of its frames (so unlike a `STACK_TRACE`
//! map, two stacks never evict each other). A sample refers to its stacks
//! by these ids; one that could not be kept is `STACK_ID_LOST` and counted.
//!
//! A user stack is walked by an unwinder. [`user_stack`] is the one place
//! that picks it, from `CONFIG.unwind_mode`: the frame-pointer walk (the
//! kernel's, through `bpf_get_stack`: [`fp_stack`], [`fp_entry_stack`]),
//! or the table-driven walk of `crate::unwind`, which assembles its frames
//! in the same scratch record and stores them with [`store_record`],
//! tagged with why it stopped early if it did.

use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    helpers::{bpf_probe_read_user, generated::bpf_get_stack},
    EbpfContext,
};
use profiler_common::{Fold, StackRecord, Stat, UnwindMode, MAX_STACK_DEPTH, STACK_ID_LOST, STACK_ID_NONE};

use crate::errno::EFAULT;
use crate::maps::{config, SCRATCH};
use crate::record::store_record;
use crate::stats::bump;
use crate::unwind::{self, RegsAt};

/// Where a user stack walk starts.
#[derive(Clone, Copy)]
pub(crate) enum UserStart {
    /// Wherever the event interrupted the task (a sample, a switch-out).
    Interrupted,
    /// A probe at a function's first instruction, with this stack pointer:
    /// the return address is the word at `sp`, and the frame pointer is
    /// still the caller's.
    FunctionEntry { sp: u64 },
}

/// The user stack of the current task (of process `tgid`), stored: its id,
/// `STACK_ID_NONE` (a kernel thread has no user stack) or `STACK_ID_LOST`.
/// `regs` says where the task's user registers are, for the table walk,
/// which stores frames in `fold` folded (`Fold`; the frame-pointer walk
/// stores them as they are).
///
/// Under `--unwind auto|tables` a process whose mappings user space has not
/// loaded yet is walked with frame pointers (`auto`: counted as fallen
/// back) or kept as its one innermost frame, marked truncated (`tables`);
/// the table manager is asked to load it meanwhile.
#[inline(always)]
pub(crate) fn user_stack<C: EbpfContext>(ctx: &C, tgid: u32, start: UserStart, regs: RegsAt, fold: Fold) -> u64 {
    let mode = config().unwind_mode;
    if mode == UnwindMode::FramePointers as u32 {
        return fp_user_stack(ctx, start);
    }
    let Some(regs) = unwind::user_regs(regs) else { return STACK_ID_NONE };
    let Some(known) = unwind::process_mappings(tgid) else {
        bump(Stat::UnwindProcessUnknown);
        if mode == UnwindMode::Tables as u32 {
            return unwind::store_untabled(regs.pc);
        }
        bump(Stat::UnwindFellBack);
        return fp_user_stack(ctx, start);
    };
    let at_entry = matches!(start, UserStart::FunctionEntry { .. });
    unwind::walk_user_stack(tgid, known, regs, mode, at_entry, fold)
}

/// The frame-pointer walk, from where `start` says.
#[inline(always)]
fn fp_user_stack<C: EbpfContext>(ctx: &C, start: UserStart) -> u64 {
    match start {
        UserStart::Interrupted => fp_stack(ctx),
        UserStart::FunctionEntry { sp } => fp_entry_stack(ctx, sp),
    }
}

/// The kernel stack of the current task, stored (see [`user_stack`]).
#[inline(always)]
pub(crate) fn kernel_stack<C: EbpfContext>(ctx: &C) -> u64 {
    read_stack(ctx, 0, Stat::KernelStackLost, Stat::KernelStackTruncated)
}

/// The frame-pointer unwinder, where the event interrupted the task.
#[inline(always)]
fn fp_stack<C: EbpfContext>(ctx: &C) -> u64 {
    read_stack(ctx, BPF_F_USER_STACK as u64, Stat::UserStackLost, Stat::UserStackTruncated)
}

/// Reads one stack with `bpf_get_stack` (`flags` says which) into the
/// scratch record and stores it.
#[inline(always)]
fn read_stack<C: EbpfContext>(ctx: &C, flags: u64, lost: Stat, truncated: Stat) -> u64 {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        bump(lost);
        return STACK_ID_LOST;
    };
    // SAFETY: `buf` points to this CPU's scratch record; the size passed
    // is exactly the size of its `ips` array.
    let ret =
        unsafe { bpf_get_stack(ctx.as_ptr(), (*buf).ips.as_mut_ptr().cast(), (MAX_STACK_DEPTH * 8) as u32, flags) };
    if ret == EFAULT {
        // No stack of this kind for this sample.
        return STACK_ID_NONE;
    }
    finish_stack(buf, ret, lost, truncated, 0)
}

/// The frame-pointer unwinder at a function's first instruction. There the
/// frame pointer is still the caller's, so a frame-pointer walk would skip
/// the caller; the stack is read one slot in and the return address (the
/// word at `sp`) put back in slot 1.
#[inline(always)]
fn fp_entry_stack<C: EbpfContext>(ctx: &C, sp: u64) -> u64 {
    let (lost, truncated) = (Stat::UserStackLost, Stat::UserStackTruncated);
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        bump(lost);
        return STACK_ID_LOST;
    };
    // SAFETY: the window starts at index 1 and its size is the rest of `ips`.
    let ret = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            (*buf).ips.as_mut_ptr().add(1).cast(),
            ((MAX_STACK_DEPTH - 1) * 8) as u32,
            BPF_F_USER_STACK as u64,
        )
    };
    if ret <= 0 {
        return if ret == EFAULT || ret == 0 {
            STACK_ID_NONE
        } else {
            bump(lost);
            STACK_ID_LOST
        };
    }
    // SAFETY: indices 0 and 1 are in bounds; the return address is read
    // from user memory with the checked helper.
    unsafe {
        (*buf).ips[0] = (*buf).ips[1];
        (*buf).ips[1] = bpf_probe_read_user(sp as *const u64).unwrap_or(0);
    }
    finish_stack(buf, ret, lost, truncated, 1)
}

/// Counts a failed or truncated read of `ret / 8 + extra` frames in `buf`,
/// and stores the frames.
#[inline(always)]
fn finish_stack(buf: *mut StackRecord, ret: i64, lost: Stat, truncated: Stat, extra: usize) -> u64 {
    if ret < 0 {
        bump(lost);
        return STACK_ID_LOST;
    }
    let len = (ret as usize / 8 + extra).min(MAX_STACK_DEPTH);
    if len >= MAX_STACK_DEPTH - extra {
        bump(truncated);
    }
    store_record(buf, len, 0)
}
