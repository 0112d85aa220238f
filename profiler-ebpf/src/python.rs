//! The Python frames of the current thread, read in the kernel at the
//! sample: CPython keeps its call stack in its own structures, not on the
//! native stack, so no native unwinder can name Python functions.
//!
//! For a process in `PY_PROCS` (user space detected CPython in it and
//! filled its `PyProcInfo`), the thread's `PyThreadState` is found the way
//! `PyGILState_GetThisThreadState` finds it: glibc keeps the value of
//! `pthread_getspecific(key)` for the first 32 keys inside `struct pthread`,
//! at the thread pointer (`task->thread.fsbase`, offset from the kernel's
//! BTF in `CONFIG`). From there the frames are followed to the thread's
//! first, each stored as (code object, instruction, checksum) with the mark
//! of the outermost frame of each `_PyEval_EvalFrameDefault` call; user
//! space names them and splices them into the native stack. Every read is
//! a checked `bpf_probe_read_*`: a torn or freed frame ends the walk, it
//! never faults.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_user,
    generated::{bpf_get_current_task, bpf_loop, bpf_probe_read_user as raw_probe_read_user},
};
use profiler_common::{
    python::{
        code_checksum_finish, code_checksum_step, PyProcInfo, CODE_CHECKSUM_SEED, PY_CODE_IDENT_WORDS,
        PY_CODE_READ_MAX, PY_ENTRY_EACH_FRAME, PY_ENTRY_FLAG, PY_ENTRY_SHIM, PY_FRAME_ENTRY, PY_LASTI_BYTES,
        PY_LASTI_CODE_UNITS, PY_MAX_FRAMES, PY_TSS_KEY_UNSET,
    },
    Fold, StackRecord, Stat, MAX_STACK_DEPTH, STACK_ID_LOST, STACK_ID_NONE,
};

use crate::maps::PY_SCRATCH_WORDS;
use crate::maps::{config, PyScratch, PY_PROCS, PY_SCRATCH, SCRATCH};
use crate::record::store_record;
use crate::stats::bump;

/// Frames visited at most: the kept ones plus 3.12+'s shims between them.
const MAX_VISITS: usize = PY_MAX_FRAMES + 16;

/// glibc keeps keys below this in `struct pthread` itself.
const PTHREAD_KEY_2NDLEVEL_SIZE: u32 = 32;

/// The 8-byte word of `buf` holding byte `off` (every field read is
/// naturally aligned, so it never straddles two words).
#[inline(always)]
fn word_at(buf: &[u64; PY_SCRATCH_WORDS], off: u16) -> u64 {
    buf[(off as usize >> 3) & (PY_CODE_READ_MAX / 8 - 1)]
}

#[inline(always)]
fn u64_at(buf: &[u64; PY_SCRATCH_WORDS], off: u16) -> u64 {
    word_at(buf, off)
}

#[inline(always)]
fn u32_at(buf: &[u64; PY_SCRATCH_WORDS], off: u16) -> u32 {
    (word_at(buf, off) >> ((off & 4) * 8)) as u32
}

#[inline(always)]
fn u8_at(buf: &[u64; PY_SCRATCH_WORDS], off: u16) -> u8 {
    (word_at(buf, off) >> ((off & 7) * 8)) as u8
}

/// Reads `len` (bounded by the buffer) bytes of user memory at `addr`.
#[inline(always)]
fn read_into(buf: &mut [u64; PY_SCRATCH_WORDS], addr: u64, len: u16) -> bool {
    let len = (len as u32) & (PY_CODE_READ_MAX as u32 - 1);
    // SAFETY: `len` < the buffer's size in bytes; the helper checks `addr`.
    unsafe { raw_probe_read_user(buf.as_mut_ptr().cast(), len, addr as *const c_void) == 0 }
}

#[inline(always)]
fn read_user_u64(addr: u64) -> Option<u64> {
    // SAFETY: the helper checks the address.
    unsafe { bpf_probe_read_user(addr as *const u64).ok() }
}

#[inline(always)]
fn set_word(record: &mut StackRecord, i: usize, value: u64) {
    if i < MAX_STACK_DEPTH {
        // SAFETY: in bounds, checked just above (visibly to the verifier).
        unsafe { *record.ips.as_mut_ptr().add(i) = value };
    }
}

/// Marks the `frame`th stored frame as the outermost of its native call.
#[inline(always)]
fn mark_entry(record: &mut StackRecord, frame: usize) {
    let i = 2 * frame;
    if i < MAX_STACK_DEPTH {
        // SAFETY: as in `set_word`.
        unsafe { *record.ips.as_mut_ptr().add(i) |= PY_FRAME_ENTRY };
    }
}

/// The thread's `PyThreadState *`, or 0.
#[inline(always)]
fn thread_state(info: &PyProcInfo) -> u64 {
    let fsbase_offset = config().task_fsbase_offset;
    if fsbase_offset == 0 || info.tss_key == PY_TSS_KEY_UNSET || info.tss_key >= PTHREAD_KEY_2NDLEVEL_SIZE {
        return 0;
    }
    // SAFETY: plain helper call; the task pointer is only read through the
    // checked kernel-read helper.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY: checked read of kernel memory.
    let Ok(fsbase) = (unsafe { bpf_probe_read_kernel((task + fsbase_offset as u64) as *const u64) }) else {
        return 0;
    };
    if fsbase == 0 {
        return 0;
    }
    let slot = fsbase + info.tsd_data as u64 + info.tsd_stride as u64 * info.tss_key as u64;
    read_user_u64(slot).unwrap_or(0)
}

/// The Python stack of the current thread of process `tgid`, stored: its
/// id, `STACK_ID_NONE` (not a Python process, or no Python frame running)
/// or `STACK_ID_LOST`. For a Python process, `fold` is set to its
/// interpreter loop (`_PyEval_EvalFrameDefault` and its `.cold` part):
/// its native stack is stored with those frames folded
/// (`profiler_common::Fold`), since user space puts the Python frames of
/// each call in their place. Run before the native walk, so the process
/// is looked up once per event.
///
/// A BPF subprogram of its own (not inlined): its locals would push the
/// sampling programs' frames past the 512-byte stack. (Passing it the
/// process's map value, looked up by the caller, instead of the pid
/// doubled the time `cpu_sample` took to load: 53–61 → 108 ms.)
#[inline(never)]
pub(crate) fn py_stack(tgid: u32, fold: &mut Fold) -> u64 {
    let Some(info) = PY_PROCS.get_ptr(&tgid) else { return STACK_ID_NONE };
    // SAFETY: pointer to a live map value, read only.
    let info = unsafe { &*info };
    fold.ranges = [(info.eval_start, info.eval_end), (info.cold_start, info.cold_end)];
    let tstate = thread_state(info);
    if tstate == 0 {
        return STACK_ID_NONE;
    }
    let o = &info.offsets;
    let Some(mut frame) = read_user_u64(tstate + o.tstate_frame as u64) else { return STACK_ID_NONE };
    if o.tstate_frame_is_cframe != 0 && frame != 0 {
        frame = read_user_u64(frame + o.cframe_current_frame as u64).unwrap_or(0);
    }
    if frame == 0 {
        return STACK_ID_NONE;
    }
    let mut walk = Walk { tgid, n: 0, frame };
    // One frame per iteration of `bpf_loop`: the verifier checks the step
    // once instead of every unrolled path of a 79-iteration loop.
    // SAFETY: `walk_step` has the callback signature; `walk` outlives the call.
    unsafe {
        bpf_loop(MAX_VISITS as u32, walk_step as *mut c_void, (&mut walk as *mut Walk).cast(), 0);
    }
    let (n, frame) = (walk.n as usize, walk.frame);
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        bump(Stat::PyStackLost);
        return STACK_ID_LOST;
    };
    // SAFETY: this CPU's scratch record; programs do not nest on a CPU.
    let record = unsafe { &mut *buf };
    if n == 0 || n > PY_MAX_FRAMES {
        return STACK_ID_NONE;
    }
    if frame != 0 {
        bump(Stat::PyStackTruncated);
    }
    // The outermost frame ends the outermost native call.
    mark_entry(record, n - 1);
    bump(Stat::PyStacks);
    store_record(buf, 2 * n, 0)
}

/// The state of a walk, carried between `bpf_loop` iterations.
#[repr(C)]
struct Walk {
    tgid: u32,
    /// Frames stored so far.
    n: u32,
    /// The next frame to read, 0 at the end.
    frame: u64,
}

/// One frame of the walk: 0 to go on, 1 to stop.
extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` `py_stack` passed to `bpf_loop`.
    let walk = unsafe { &mut *ctx.cast::<Walk>() };
    let frame = walk.frame;
    let n = walk.n as usize;
    if frame == 0 || n >= PY_MAX_FRAMES {
        return 1;
    }
    let (Some(info), Some(buf), Some(scratch)) =
        (PY_PROCS.get_ptr(&walk.tgid), SCRATCH.get_ptr_mut(0), PY_SCRATCH.get_ptr_mut(0))
    else {
        return 1;
    };
    // SAFETY: live map values; this CPU's scratch buffers.
    let (info, record, scratch): (&PyProcInfo, &mut StackRecord, &mut PyScratch) =
        unsafe { (&*info, &mut *buf, &mut *scratch) };
    let o = &info.offsets;
    if !read_into(&mut scratch.frame, frame, o.frame_size) {
        return 1;
    }
    let previous = u64_at(&scratch.frame, o.frame_previous);
    let code = u64_at(&scratch.frame, o.frame_code);
    walk.frame = previous;
    if o.entry_kind == PY_ENTRY_SHIM && u8_at(&scratch.frame, o.frame_entry) == o.owner_cstack {
        // The shim ends the frames of the previous native call.
        if n > 0 {
            mark_entry(record, n - 1);
        }
        return 0;
    }
    if !read_into(&mut scratch.code, code, o.code_size) || u64_at(&scratch.code, o.object_type) != info.code_type {
        // Not a code object (freed under us, or a frame of something
        // else): not named, not guessed.
        return 0;
    }
    let lasti: i32 = if o.lasti_kind == PY_LASTI_BYTES {
        (u32_at(&scratch.frame, o.frame_lasti) as i32) >> 1
    } else if o.lasti_kind == PY_LASTI_CODE_UNITS {
        u32_at(&scratch.frame, o.frame_lasti) as i32
    } else {
        let ptr = u64_at(&scratch.frame, o.frame_lasti);
        (ptr.wrapping_sub(code + o.code_adaptive as u64) as i64 >> 1) as i32
    };
    let entry = o.entry_kind == PY_ENTRY_EACH_FRAME
        || (o.entry_kind == PY_ENTRY_FLAG && u8_at(&scratch.frame, o.frame_entry) != 0);
    let mut h = CODE_CHECKSUM_SEED;
    let mut w = 0;
    while w < PY_CODE_IDENT_WORDS {
        h = code_checksum_step(h, u64_at(&scratch.code, o.code_ident[w]));
        w += 1;
    }
    let checksum = code_checksum_finish(h);
    set_word(record, 2 * n, code | if entry { PY_FRAME_ENTRY } else { 0 });
    set_word(record, 2 * n + 1, (lasti as u32 as u64) | ((checksum as u64) << 32));
    walk.n += 1;
    0
}
