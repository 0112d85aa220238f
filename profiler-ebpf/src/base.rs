//! Each thread's stack base, remembered: the outer frames of a thread's
//! stack (`main` and below, a thread's entry, an interpreter's loop and
//! everything under it) are the same from one sample to the next, and
//! walking them again costs a rule lookup and a stack read per frame.
//!
//! A complete table walk of at least [`BASE_MIN_FRAMES`] frames that did
//! not fall back to frame pointers is kept per thread in `THREAD_BASES` (a [`ThreadBase`]: its outermost
//! [`BASE_FRAMES`] frames, each with the registers and flags its step
//! started from, and the stack words the walk read for them). The next
//! walk of the thread compares each frame's `sp` with the base's *anchor*
//! (the frame where the last walk met it); at a frame whose registers and
//! flags equal a base frame's, it re-reads every word the base's walk read
//! from that frame on, and if all are unchanged it takes the base's frames
//! instead of walking them. The walk from a frame on is a function of its
//! registers and flags, the rules of its pcs (fixed while the code stays
//! mapped, which it does while its frames are live) and the words it
//! reads, so the frames taken are the ones the walk would have found:
//! the base is exact, not a guess. A frame-pointer step is never kept
//! (a process's tables may not be loaded yet), nor a stack that ended early.
//! Frames taken from a base do not mark their executables' tables as used:
//! under table pressure those may be evicted first, and the next walk that
//! needs one asks for it again.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_user as raw_probe_read_user};
use profiler_common::{unwind::ProcMappings, Truncation, MAX_STACK_DEPTH};

use crate::maps::{BASE_BUILD, BASE_STACK, BASE_STACK_BYTES, BASE_STACK_WORDS, SCRATCH, THREAD_BASES, UNWIND_WALK};
use crate::record::hash_frame;
use crate::usermem;
use crate::walk::{BaseFrame, BaseRead, ThreadBase, Walk, BASE_FRAMES, BASE_READS, FELL_BACK, READ_PAIR, STEP_FLAGS};

/// Bounds a copy's size for the verifier (the size is checked against
/// `BASE_STACK_BYTES` first; the mask only has to keep that value).
const BASE_STACK_MASK: u32 = (BASE_STACK_BYTES * 2 - 1) as u32;

/// Frames a walk needs to be kept as a base: taking a base costs about
/// what walking three or four frames does (two lookups of the base, one
/// copy of the stack under it), so shallower stacks are walked.
const BASE_MIN_FRAMES: u32 = 8;

/// Time a thread's base is kept at least before a walk that did not meet
/// it replaces it.
const KEEP_EVERY_NS: u64 = 100_000_000;

/// A frame no walk is at (the anchor of a walk without a base).
pub(crate) const NO_FRAME: BaseFrame = BaseFrame { pc: 0, sp: u64::MAX, bp: 0, flags: 0, first_read: 0 };

/// Sets up `walk` (its `tid` set) to compare against its thread's base.
#[inline(always)]
pub(crate) fn start(walk: &mut Walk, procs: *mut ProcMappings) {
    walk.reads = 0;
    walk.bp_use = 0;
    walk.base_used = 0;
    walk.base_live = 0;
    walk.may_keep = 1;
    // SAFETY: a live map value; one field is read.
    if unsafe { (*procs).deep_stacks } == 0 {
        return;
    }
    let Some(base) = THREAD_BASES.get_ptr(&walk.tid) else { return };
    // SAFETY: a live map value; only this thread's walks (one CPU at a
    // time: a thread runs on one) write it.
    let (len, anchor, kept_ns) = unsafe { ((*base).len, (*base).anchor, (*base).kept_ns) };
    // Keeping a base copies 2.5 KiB into the map (~0.4 µs): a thread whose
    // stack changes under every sample replaces its base ten times a
    // second at most, not at every sample.
    walk.may_keep = u32::from(walk.now.wrapping_sub(kept_ns) >= KEEP_EVERY_NS);
    if anchor >= len || len - anchor > BASE_FRAMES as u32 {
        return;
    }
    // SAFETY: as above; the index is masked to the array.
    walk.anchor = unsafe { (*base).frames[anchor as usize & (BASE_FRAMES - 1)] };
    walk.anchor_index = anchor;
    walk.base_live = 1;
}

/// Notes the frame `walk` is at (before its step) in this CPU's build.
#[inline(always)]
pub(crate) fn note_frame(walk: &Walk) {
    let Some(build) = BASE_BUILD.get_ptr_mut(0) else { return };
    let slot = walk.len as usize & (BASE_FRAMES - 1);
    // SAFETY: this CPU's build; the index is masked to the array.
    unsafe {
        (*build).frames[slot] =
            BaseFrame { pc: walk.pc, sp: walk.sp, bp: walk.bp, flags: walk.flags & STEP_FLAGS, first_read: walk.reads }
    };
}

/// The word at `addr`, noted in the build.
#[inline(always)]
pub(crate) fn read(walk: &mut Walk, addr: u64) -> Option<u64> {
    let v = usermem::read(addr)?;
    note_read(walk, addr, [v, 0]);
    Some(v)
}

/// The two words at `addr` ([`usermem::read_pair`]), noted in the build.
#[inline(always)]
pub(crate) fn read_pair(walk: &mut Walk, addr: u64) -> Option<[u64; 2]> {
    let v = usermem::read_pair(addr)?;
    note_read(walk, addr | READ_PAIR, v);
    Some(v)
}

#[inline(always)]
fn note_read(walk: &mut Walk, addr: u64, v: [u64; 2]) {
    if let Some(build) = BASE_BUILD.get_ptr_mut(0) {
        // SAFETY: this CPU's build; the index is masked to the array.
        unsafe { (*build).read_log[walk.reads as usize & (BASE_READS - 1)] = BaseRead { addr, v } };
    }
    walk.reads = walk.reads.wrapping_add(1);
}

/// Whether `f` is the frame `walk` is at; `bp` is compared only when the
/// base's walk used it from this frame on (`with_bp`): code without frame
/// pointers keeps any value in `rbp`, and it changes between samples.
#[inline(always)]
fn same(f: &BaseFrame, walk: &Walk, with_bp: bool) -> bool {
    f.sp == walk.sp && f.pc == walk.pc && (!with_bp || f.bp == walk.bp) && f.flags == walk.flags & STEP_FLAGS
}

/// [`Walk::reason`] of a walk stopped at a frame whose `sp` reached its
/// anchor's, for [`meet`] (not a `Truncation`: never stored).
pub(crate) const AT_BASE: u32 = 0x100;

/// For a walk stopped at [`AT_BASE`]: finds the base's frame at this `sp`,
/// and if it is this frame and the stack under it unchanged, appends the
/// base's frames from there (the walk is then over). Returns whether it
/// did; if not, the walk goes on, its anchor further out (or its base
/// given up), so it does not stop at this frame again.
///
/// Its three loops (find the frame, compare the words, append the frames)
/// are `bpf_loop` callbacks that keep their counters in the walk (a map
/// value, as the steps do): the verifier then checks each callback once,
/// with unknown counters, instead of once per value of a counter.
#[inline(never)]
pub(crate) fn meet() -> bool {
    let Some(walk) = UNWIND_WALK.get_ptr_mut(0) else { return false };
    // SAFETY: this CPU's walk.
    let walk = unsafe { &mut *walk };
    walk.reason = Truncation::Complete as u32;
    let Some(base) = THREAD_BASES.get_ptr_mut(&walk.tid) else {
        walk.base_live = 0;
        return false;
    };
    let mut ctx = MeetCtx { base };
    let ctx_ptr: *mut c_void = (&raw mut ctx).cast();
    // The first of the base's frames at or above this `sp`, not this one
    // if it has the same `sp` but differs.
    walk.m.k = walk.anchor_index;
    walk.m.state = SEEKING;
    // SAFETY: the callbacks are static functions of this program; their
    // context is `ctx`, on this stack.
    unsafe { bpf_loop(BASE_FRAMES as u32, seek_frame as *mut c_void, ctx_ptr, 0) };
    if walk.m.state != FOUND {
        if walk.m.state != PASSED {
            walk.base_live = 0;
        }
        return false;
    }
    // SAFETY: a live map value (see `start`).
    let (len, reads) = unsafe { ((*base).len, (*base).reads) };
    let k = walk.anchor_index;
    // Every word the base's walk read from this frame on, read again.
    let (first, end) = (walk.anchor.first_read, reads);
    let taken = len.wrapping_sub(k);
    if first == end
        || end.wrapping_sub(first) > BASE_READS as u32
        || taken > BASE_FRAMES as u32
        || walk.len + taken > MAX_STACK_DEPTH as u32
    {
        walk.base_live = 0;
        return false;
    }
    // The stack from this frame's `sp` up to the last word read, in one
    // helper call (one costs ~64 ns, and 0.2 ns per byte): the words are
    // compared in the copy, any outside it read one by one.
    let Some(copy_buf) = BASE_STACK.get_ptr_mut(0) else {
        walk.base_live = 0;
        return false;
    };
    // SAFETY: a live map value; the index is masked to the array.
    let last = unsafe { (*base).read_log[end.wrapping_sub(1) as usize & (BASE_READS - 1)].addr } & !READ_PAIR;
    let size = last.wrapping_add(16).wrapping_sub(walk.sp);
    let size = if size <= BASE_STACK_BYTES as u64 { size as u32 } else { 0 };
    // SAFETY: `size` is at most the buffer's size; the helper checks the
    // address.
    let copied = size != 0
        && unsafe { raw_probe_read_user(copy_buf.cast(), size & BASE_STACK_MASK, walk.sp as *const c_void) } == 0;
    walk.m.lo = walk.sp;
    walk.m.size = if copied { size } else { 0 };
    walk.m.next = first;
    walk.m.end = end;
    walk.m.state = SEEKING;
    // SAFETY: as above.
    unsafe { bpf_loop(BASE_READS as u32, check_read as *mut c_void, ctx_ptr, 0) };
    if walk.m.state != FOUND {
        walk.base_live = 0;
        return false;
    }
    walk.m.k = k;
    walk.m.left = taken;
    // SAFETY: as above.
    unsafe { bpf_loop(BASE_FRAMES as u32, copy_frame as *mut c_void, ctx_ptr, 0) };
    walk.base_used = 1;
    // SAFETY: as above.
    unsafe { (*base).anchor = k };
    true
}

/// [`WalkMeet::state`]: still looking / comparing.
const SEEKING: u32 = 0;
/// [`WalkMeet::state`]: the frame was found / every word was unchanged.
const FOUND: u32 = 1;
/// [`WalkMeet::state`]: the base's next frame is further out than this one.
const PASSED: u32 = 2;
/// [`WalkMeet::state`]: the base has no frame at or beyond this one, or a
/// word changed.
const GONE: u32 = 3;

/// The callbacks' context: the base (a map value pointer, which a map
/// value could not hold).
#[repr(C)]
struct MeetCtx {
    base: *mut ThreadBase,
}

/// The walk and its base, for a callback.
#[inline(always)]
fn meet_parts(ctx: *mut c_void) -> Option<(&'static mut Walk, *mut ThreadBase)> {
    let walk = UNWIND_WALK.get_ptr_mut(0)?;
    // SAFETY: `meet` passes its `MeetCtx`; the walk is this CPU's.
    unsafe { Some((&mut *walk, (*ctx.cast::<MeetCtx>()).base)) }
}

/// Looks at the base's frame `m.k` (a `bpf_loop` callback).
#[inline(never)]
extern "C" fn seek_frame(_index: u64, ctx: *mut c_void) -> i64 {
    let Some((walk, base)) = meet_parts(ctx) else { return 1 };
    let k = walk.m.k;
    // SAFETY: a live map value; the index is masked to the array.
    let (len, bp_use, f) = unsafe { ((*base).len, (*base).bp_use, (*base).frames[k as usize & (BASE_FRAMES - 1)]) };
    if k >= len {
        walk.m.state = GONE;
        return 1;
    }
    if f.sp > walk.sp || (f.sp == walk.sp && same(&f, walk, k < bp_use)) {
        walk.m.state = if f.sp == walk.sp { FOUND } else { PASSED };
        walk.anchor = f;
        walk.anchor_index = k;
        return 1;
    }
    walk.m.k = k.wrapping_add(1);
    0
}

/// Compares one word the base's walk read (a `bpf_loop` callback).
#[inline(never)]
extern "C" fn check_read(_index: u64, ctx: *mut c_void) -> i64 {
    let Some((walk, base)) = meet_parts(ctx) else { return 1 };
    let m = &mut walk.m;
    if m.next == m.end {
        m.state = FOUND;
        return 1;
    }
    // SAFETY: a live map value; the index is masked to the array.
    let e = unsafe { (*base).read_log[m.next as usize & (BASE_READS - 1)] };
    let off = (e.addr & !READ_PAIR).wrapping_sub(m.lo);
    let copied = BASE_STACK.get_ptr(0);
    let unchanged = if let Some(words) = copied.filter(|_| off & 7 == 0 && off + 16 <= u64::from(m.size)) {
        // In the copy: both words of a pair are (the copy ends 16 bytes
        // past the last read).
        let i = (off >> 3) as usize;
        // SAFETY: `off + 16 <= size <= BASE_STACK_BYTES`; masked as well,
        // for the verifier.
        let (v0, v1) = unsafe { ((*words)[i & (BASE_STACK_WORDS - 1)], (*words)[(i + 1) & (BASE_STACK_WORDS - 1)]) };
        v0 == e.v[0] && (e.addr & READ_PAIR == 0 || v1 == e.v[1])
    } else if e.addr & READ_PAIR != 0 {
        usermem::read_pair(e.addr & !READ_PAIR) == Some(e.v)
    } else {
        usermem::read(e.addr) == Some(e.v[0])
    };
    if !unchanged {
        m.state = GONE;
        return 1;
    }
    m.next = m.next.wrapping_add(1);
    0
}

/// Appends the base's frame `m.k` to the stack (a `bpf_loop` callback).
#[inline(never)]
extern "C" fn copy_frame(_index: u64, ctx: *mut c_void) -> i64 {
    let Some((walk, base)) = meet_parts(ctx) else { return 1 };
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return 1 };
    let at = walk.len as usize;
    if walk.m.left == 0 || at >= MAX_STACK_DEPTH {
        return 1;
    }
    // SAFETY: `at < MAX_STACK_DEPTH`, the length of `ips`; the base's
    // index is masked to its array; both are live map values.
    let ip = walk.fold.apply(unsafe { (*base).frames[walk.m.k as usize & (BASE_FRAMES - 1)].pc });
    // SAFETY: as above.
    unsafe { (*buf).ips[at] = ip };
    walk.len += 1;
    walk.hash = hash_frame(walk.hash, ip);
    walk.m.k = walk.m.k.wrapping_add(1);
    walk.m.left -= 1;
    0
}

/// After a walk: keeps it as its thread's base if it can serve as one.
#[inline(always)]
pub(crate) fn keep(walk: &Walk, procs: *mut ProcMappings) {
    if walk.base_used != 0
        || walk.may_keep == 0
        || walk.reason != Truncation::Complete as u32
        || walk.flags & FELL_BACK != 0
        || walk.len < BASE_MIN_FRAMES
    {
        return;
    }
    // SAFETY: a live map value; a racing rewrite by user space clears the
    // mark, and the next deep walk sets it again.
    unsafe {
        if (*procs).deep_stacks == 0 {
            (*procs).deep_stacks = 1;
        }
    }
    let Some(build) = BASE_BUILD.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's build, filled by this walk.
    let build: &mut ThreadBase = unsafe { &mut *build };
    build.len = walk.len;
    build.reads = walk.reads;
    build.bp_use = walk.bp_use;
    build.kept_ns = walk.now;
    build.anchor = walk.len.saturating_sub(BASE_FRAMES as u32);
    // A full map evicts the thread sampled longest ago.
    let _ = THREAD_BASES.insert(&walk.tid, build, 0);
}
