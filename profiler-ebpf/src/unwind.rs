//! The table-driven user-stack walk: walks a user stack frame by frame
//! with the unwind tables user space loaded (see `profiler_common::unwind`
//! for the map layout), falling back to frame pointers for code without a
//! table. `crate::stack::user_stack` picks it from `CONFIG.unwind_mode`.
//!
//! ## How a walk runs (the interface a follow-on walk builds on)
//!
//! - [`walk_user_stack`] sets up this CPU's [`Walk`] (in the per-CPU map
//!   `UNWIND_WALK`, not on the BPF stack: the verifier then checks the
//!   per-frame callback once, with unknown values, instead of following
//!   the state from one iteration to the next) and runs `bpf_loop`
//!   (kernel 5.17+), which calls [`unwind_step`] once per frame, at most
//!   `MAX_STACK_DEPTH + 1` times.
//! - One step ([`step`]) stores `walk.pc` as the next frame in the per-CPU
//!   scratch record (`SCRATCH.ips[walk.len]`; folded by `walk.fold`, see
//!   `profiler_common::Fold`), finds the rule of that pc and
//!   moves `pc`/`sp`/`bp` to the caller ([`apply`], or
//!   [`frame_pointer_step`] for code without a table). It returns
//!   [`CONTINUE`] or [`STOP`]; a walk that stops early sets `walk.reason`
//!   (a `Truncation`), which ends the stored stack in a `[truncated]` frame.
//! - The per-frame state is all in [`Walk`]: the registers (`pc`, `sp`,
//!   `bp`), the frames stored so far (`len`), `flags` (fell back, `bp`
//!   unknown, `pc` exact rather than a return address, at a function's
//!   entry), the mode, and `last`, the mapping of the previous frame (a
//!   cache: callers are mostly in the same file).
//! - A thread whose last deep walk was kept as its stack base
//!   (`crate::base`) stops at the frame whose `sp` reaches the base's
//!   anchor (reason `base::AT_BASE`); `base::meet` then appends the base's
//!   frames if the stack under that frame is unchanged, or the loop goes on.
//! - When the loop ends, the frames `SCRATCH.ips[..walk.len]` (hashed as
//!   they were written, `walk.hash`) are stored once
//!   (`crate::record::store_hashed`) with the truncation tag,
//!   and the outcome is counted in `STATS` (`UnwindTables`,
//!   `UnwindFellBack`, `Trunc*`).
//!
//! The Python walk (`crate::python`) runs before this one and only hands
//! it the range to fold. A walk of another kind of frame that needs the
//! native registers can run after or inside this one on the same state:
//! read `walk.pc` to tell which code a frame is in, append frames at
//! `walk.len`, and return [`STOP`] with a reason, the way [`step`] does.
//!
//! A frame's rule is looked up at its pc for the innermost frame (and the
//! frame a signal interrupted), at `pc - 1` for the others, whose pc is a
//! return address that may be the first byte of the next function.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_get_current_task_btf, bpf_loop, bpf_task_pt_regs};
use profiler_common::{
    unwind::{
        row_offset, row_rule, CfaKind, ExecMapping, NotifyState, ProcMappings, RbpKind, UnwindEvent, UnwindRule,
        EVENT_NEW_PROCESS, EVENT_UNKNOWN_PC, EXEC_ID_NONE, MAPPING_SEARCH_STEPS, MAX_PROC_MAPPINGS, PAGE_BITS,
        PAGE_SIZE, ROW_SEARCH_STEPS,
    },
    Fold, Stat, Truncation, UnwindMode, MAX_STACK_DEPTH, STACK_ID_LOST, STACK_TRUNCATION_SHIFT,
};

use crate::base;
use crate::maps::{
    now_ns, SCRATCH, THREAD_BASES, UNWIND_EVENTS, UNWIND_EXECS, UNWIND_NOTIFIED, UNWIND_PAGES, UNWIND_PROCS,
    UNWIND_ROWS, UNWIND_RULES, UNWIND_WALK,
};
use crate::record::{hash_frame, store_hashed, store_record, HASH_START};
use crate::stats::{add, bump};
use crate::usermem::{read, read_pair};
pub(crate) use crate::walk::Walk;
use crate::walk::{WalkMeet, AT_ENTRY, BP_UNKNOWN, FELL_BACK, PC_EXACT};

/// A task's user registers where its stack walk starts.
#[derive(Clone, Copy)]
pub(crate) struct UserRegs {
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Where a program finds the user registers a stack walk starts from.
#[derive(Clone, Copy)]
pub(crate) enum RegsAt {
    /// The context's register set (a uprobe).
    Ctx(*const aya_ebpf::bindings::pt_regs),
    /// The task's saved user registers (a perf_event sample, in user or
    /// kernel mode; a task switching out).
    Task,
}

/// The user registers `at` points to; `None` when there are none (a
/// kernel thread, a context not in user mode).
#[inline(always)]
pub(crate) fn user_regs(at: RegsAt) -> Option<UserRegs> {
    match at {
        RegsAt::Ctx(regs) => regs_from(regs),
        RegsAt::Task => task_user_regs(),
    }
}

/// User registers from a `pt_regs` the program may read directly (a
/// uprobe context), or `None` when they are not user mode.
#[inline(always)]
fn regs_from(regs: *const aya_ebpf::bindings::pt_regs) -> Option<UserRegs> {
    // SAFETY: the caller passes its context's register set.
    let (cs, pc, sp, bp) = unsafe { ((*regs).cs, (*regs).rip, (*regs).rsp, (*regs).rbp) };
    if cs & 3 != 3 {
        return None;
    }
    Some(UserRegs { pc, sp, bp })
}

/// The current task's user registers, saved on kernel entry: for a sample
/// taken in the kernel and for a task switching out. `None` for kernel
/// threads (no user mode).
#[inline(always)]
fn task_user_regs() -> Option<UserRegs> {
    // SAFETY: helper calls; the returned `pt_regs` is a trusted BTF pointer
    // the verifier lets the program read field by field.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const aya_ebpf::bindings::pt_regs;
        if regs.is_null() {
            return None;
        }
        let cs = core::ptr::read_volatile(&(*regs).cs);
        if cs & 3 != 3 {
            return None;
        }
        Some(UserRegs {
            pc: core::ptr::read_volatile(&(*regs).rip),
            sp: core::ptr::read_volatile(&(*regs).rsp),
            bp: core::ptr::read_volatile(&(*regs).rbp),
        })
    }
}

/// How stale an executable's `last_used_ns` may get before a walk through
/// it writes it again (user space evicts tables idle for 10 s or more).
const LAST_USED_GRANULE_NS: u64 = 1_000_000_000;

/// The mappings of a process the program knows (see [`process_mappings`]).
#[derive(Clone, Copy)]
pub(crate) struct Known(*mut ProcMappings);

/// The mappings of process `pid`, if user space loaded them; if not, asks
/// user space for them (rate-limited) so the next stacks can use tables.
/// The walk starts with them, so its first frame costs no second lookup.
#[inline(always)]
pub(crate) fn process_mappings(pid: u32) -> Option<Known> {
    if let Some(procs) = UNWIND_PROCS.get_ptr_mut(&pid) {
        return Some(Known(procs));
    }
    notify(pid, EVENT_NEW_PROCESS, 0, now_ns());
    None
}

/// The current process replaced its program (`execve`): the mappings user
/// space loaded for it are gone, and its pcs could fall inside them with
/// another file's table. Forgotten, so its next sample asks at once.
#[inline(always)]
pub(crate) fn process_exec() {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    // Nothing to do for a process never sampled: removing a missing key
    // fails harmlessly.
    let _ = UNWIND_PROCS.remove(&pid);
    let _ = UNWIND_NOTIFIED.remove(&pid);
    let _ = THREAD_BASES.remove(&(pid_tgid as u32));
}

#[inline(always)]
fn notify(pid: u32, kind: u32, pc: u64, now: u64) {
    if let Some(state) = UNWIND_NOTIFIED.get_ptr_mut(&pid) {
        // SAFETY: live LRU value; a racing CPU writing the same slot only
        // lets one more event through.
        if !unsafe { (*state).admit(now) } {
            return;
        }
    } else if UNWIND_NOTIFIED.insert(&pid, &NotifyState { last_ns: now, streak: 0, _pad: 0 }, 0).is_err() {
        return;
    }
    if UNWIND_EVENTS.output(&UnwindEvent { pid, kind, pc }, 0).is_err() {
        bump(Stat::UnwindEventsLost);
    }
}

/// Walks the user stack of process `pid` from `regs` with the tables (the
/// process must be [`process_known`]) and stores it, frames in `fold`
/// folded. Returns the stack id.
#[inline(always)]
pub(crate) fn walk_user_stack(pid: u32, known: Known, regs: UserRegs, mode: u32, at_entry: bool, fold: Fold) -> u64 {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        bump(Stat::UserStackLost);
        return STACK_ID_LOST;
    };
    let Some(walk_ptr) = UNWIND_WALK.get_ptr_mut(0) else {
        bump(Stat::UserStackLost);
        return STACK_ID_LOST;
    };
    let start = Walk {
        pc: regs.pc,
        sp: regs.sp,
        bp: regs.bp,
        now: now_ns(),
        hash: HASH_START,
        pid,
        len: 0,
        reason: Truncation::Complete as u32,
        flags: if at_entry { PC_EXACT | AT_ENTRY } else { PC_EXACT },
        mode,
        tid: aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32,
        last: ExecMapping { start: 0, end: 0, bias: 0, exec_id: EXEC_ID_NONE, tag: 0 },
        reads: 0,
        base_live: 0,
        base_used: 0,
        bp_use: 0,
        may_keep: 0,
        anchor_index: 0,
        anchor: base::NO_FRAME,
        fold,
        m: WalkMeet { lo: 0, size: 0, next: 0, end: 0, k: 0, left: 0, state: 0 },
    };
    // SAFETY: this CPU's slot; programs do not nest on one CPU.
    unsafe {
        *walk_ptr = start;
        // The innermost frame's mapping, looked up at its exact pc and
        // written into the map value: built into `start` on the stack, each
        // way out of the search carried a different stack into the rest of
        // the program, and the verifier checked it again for each (~6 ms
        // of every load).
        if let Some(m) = search(known.0, regs.pc) {
            (*walk_ptr).last = m;
        }
        base::start(&mut *walk_ptr, known.0);
    }
    // A walk that reaches its thread's base stops there (`base::AT_BASE`)
    // and takes the base's frames, or goes on comparing further out: each
    // round runs the steps until the walk ends or stops at the base. The
    // rounds are a `bpf_loop` of their own, so the verifier checks the
    // steps and `base::meet` at one call site each.
    // SAFETY: the callback is a static function of this program.
    unsafe {
        bpf_loop(MEET_ROUNDS + 1, walk_round as *mut c_void, core::ptr::null_mut(), 0);
    }
    // SAFETY: as above.
    let walk = unsafe { *walk_ptr };
    base::keep(&walk, known.0);
    if walk.base_used != 0 {
        bump(Stat::UnwindBaseReused);
    }
    let reason = walk.reason;
    if let Some(stat) = Truncation::from_u8(reason as u8).and_then(Stat::truncated) {
        bump(stat);
    } else if walk.flags & FELL_BACK != 0 {
        bump(Stat::UnwindFellBack);
    } else {
        bump(Stat::UnwindTables);
    }
    let len = (walk.len as usize).min(MAX_STACK_DEPTH);
    bump(Stat::UnwindWalks);
    add(Stat::UnwindWalkFrames, len as u64);
    let tag = u64::from(reason & 0xff) << STACK_TRUNCATION_SHIFT;
    store_hashed(buf, len, tag, walk.hash)
}

/// Times a walk may stop at its thread's base and go on (each time its
/// anchor is further out); the last round goes on without the base.
const MEET_ROUNDS: u32 = 3;

/// One round of a walk (a `bpf_loop` callback): its steps until it ends
/// or reaches its base, then the base compared.
#[inline(never)]
extern "C" fn walk_round(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(walk) = UNWIND_WALK.get_ptr_mut(0) else { return STOP };
    if index >= u64::from(MEET_ROUNDS) {
        // SAFETY: this CPU's walk.
        unsafe { (*walk).base_live = 0 };
    }
    // One more iteration than frames kept: the last one only finds out
    // whether there was more (then the stack is marked truncated). A
    // round after the first starts its count again; `len` bounds it.
    // SAFETY: the callback is a static function of this program.
    unsafe {
        bpf_loop(MAX_STACK_DEPTH as u32 + 1, unwind_step as *mut c_void, core::ptr::null_mut(), 0);
    }
    // SAFETY: as above (read afresh: the steps wrote it).
    if unsafe { (*walk).reason } != base::AT_BASE || base::meet() {
        return STOP;
    }
    CONTINUE
}

/// Stores a one-frame stack ending in `[truncated]`: `--unwind tables` and
/// a process whose mappings are not loaded yet.
#[inline(always)]
pub(crate) fn store_untabled(pc: u64) -> u64 {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        bump(Stat::UserStackLost);
        return STACK_ID_LOST;
    };
    // SAFETY: index 0 is in bounds.
    unsafe { (*buf).ips[0] = pc };
    bump(Stat::TruncNoTable);
    let tag = (Truncation::NoTable as u64) << STACK_TRUNCATION_SHIFT;
    store_record(buf, 1, tag)
}

/// [`unwind_step`]'s answer to `bpf_loop`: go on with the next frame.
pub(crate) const CONTINUE: i64 = 0;
/// [`unwind_step`]'s answer to `bpf_loop`: the walk is over.
pub(crate) const STOP: i64 = 1;

/// One frame: store `pc`, then find the caller's registers.
#[inline(never)]
extern "C" fn unwind_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(walk) = UNWIND_WALK.get_ptr_mut(0) else { return STOP };
    // SAFETY: this CPU's walk, set up by `walk_user_stack`.
    step(unsafe { &mut *walk })
}

#[inline(always)]
fn stop(walk: &mut Walk, reason: Truncation) -> i64 {
    walk.reason = reason as u32;
    STOP
}

#[inline(always)]
fn step(walk: &mut Walk) -> i64 {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return stop(walk, Truncation::ReadFailed) };
    let len = walk.len as usize;
    if len >= MAX_STACK_DEPTH {
        return stop(walk, Truncation::Depth);
    }
    if walk.base_live != 0 && walk.sp >= walk.anchor.sp {
        walk.reason = base::AT_BASE;
        return STOP;
    }
    base::note_frame(walk);
    let pc = walk.pc;
    let ip = walk.fold.apply(pc);
    // SAFETY: `len < MAX_STACK_DEPTH`, the length of `ips`.
    unsafe { *(*buf).ips.as_mut_ptr().add(len) = ip };
    walk.len += 1;
    walk.hash = hash_frame(walk.hash, ip);

    let lookup_pc = if walk.flags & PC_EXACT != 0 { pc } else { pc.wrapping_sub(1) };
    let m = if walk.last.start <= lookup_pc && lookup_pc < walk.last.end {
        walk.last
    } else {
        let Some(m) = find_mapping(walk.pid, lookup_pc) else {
            // dlopen, exec, or a pc outside any file: have user space look.
            notify(walk.pid, EVENT_UNKNOWN_PC, pc, walk.now);
            return frame_pointer_step(walk);
        };
        walk.last = m;
        m
    };
    if m.exec_id == EXEC_ID_NONE {
        return frame_pointer_step(walk);
    }
    let Some(exec) = UNWIND_EXECS.get_ptr_mut(m.exec_id) else { return frame_pointer_step(walk) };
    // SAFETY: a live map value.
    let exec_ref = unsafe { &mut *exec };
    if exec_ref.tag != m.tag {
        // The table was evicted since the mapping was written: ask for it.
        notify(walk.pid, EVENT_UNKNOWN_PC, pc, walk.now);
        return frame_pointer_step(walk);
    }
    // The eviction order needs seconds, not every frame: writing the
    // shared value on every frame moved its cache line between CPUs.
    if walk.now.wrapping_sub(exec_ref.last_used_ns) > LAST_USED_GRANULE_NS {
        exec_ref.last_used_ns = walk.now;
    }
    let vaddr = lookup_pc.wrapping_sub(m.bias);
    let page = (vaddr >> PAGE_BITS).wrapping_sub(exec_ref.first_page);
    if page >= u64::from(exec_ref.page_count) {
        return stop(walk, Truncation::NoRule);
    }
    let Some(page) = UNWIND_PAGES.get(exec_ref.page_index.wrapping_add(page as u32)) else {
        return stop(walk, Truncation::NoRule);
    };
    let (first, rows) = (page.first_row, page.count);
    if rows == 0 {
        return stop(walk, Truncation::NoRule);
    }
    let offset = (vaddr & (PAGE_SIZE - 1)) as u32;
    // The last row at or below `offset`. The page's first row is at
    // offset 0, so there always is one.
    let (mut base, mut n) = (0u32, rows);
    let mut i = 0;
    // Stops once one row is left: a page's rows are usually a few dozen,
    // so most lookups take 5 or 6 probes, not `ROW_SEARCH_STEPS`.
    while i < ROW_SEARCH_STEPS && n > 1 {
        let half = n / 2;
        let Some(row) = row_at(first.wrapping_add(base + half)) else { return stop(walk, Truncation::NoRule) };
        base += half & at_or_below(u64::from(row_offset(row)), u64::from(offset));
        n -= half;
        i += 1;
    }
    let Some(row) = row_at(first.wrapping_add(base)) else { return stop(walk, Truncation::NoRule) };
    let Some(rule) = UNWIND_RULES.get(row_rule(row)) else { return stop(walk, Truncation::NoRule) };
    apply(walk, *rule)
}

/// All ones when `x <= key`, else 0, without a branch: a binary search
/// written with branches gives the verifier two paths per probe (2^13 for a
/// page's rows) and the program no longer loads. Both values are below 2^63
/// (user addresses, page offsets), so the sign of the difference decides.
#[inline(always)]
fn at_or_below(x: u64, key: u64) -> u32 {
    let below = (key.wrapping_sub(x) >> 63) as u32;
    below.wrapping_sub(1)
}

/// The mapping of process `pid` that holds `pc`.
#[inline(always)]
fn find_mapping(pid: u32, pc: u64) -> Option<ExecMapping> {
    search(UNWIND_PROCS.get_ptr(&pid)?, pc)
}

/// The mapping of `procs` that holds `pc`.
#[inline(always)]
fn search(procs: *const ProcMappings, pc: u64) -> Option<ExecMapping> {
    // SAFETY: a live map value; only fields are read.
    let count = unsafe { (*procs).count }.min(MAX_PROC_MAPPINGS as u32);
    // The last mapping starting at or below the pc.
    let (mut base, mut n) = (0u32, count);
    let mut i = 0;
    while i < MAPPING_SEARCH_STEPS {
        let half = n / 2;
        let Some(m) = mapping(procs, base + half) else { break };
        base += half & at_or_below(m.start, pc);
        n -= half;
        i += 1;
    }
    let found = if count > 0 { mapping(procs, base) } else { None };
    found.filter(|m| m.start <= pc && pc < m.end)
}

#[inline(always)]
fn mapping(procs: *const ProcMappings, i: u32) -> Option<ExecMapping> {
    // SAFETY: a live map value; the index is checked against the array.
    unsafe { (*procs).mappings.get(i as usize).copied() }
}

#[inline(always)]
fn row_at(index: u32) -> Option<u32> {
    let pair = *UNWIND_ROWS.get(index >> 1)?;
    Some(if index & 1 == 0 { pair as u32 } else { (pair >> 32) as u32 })
}

/// `ucontext_t` offsets of the saved `rbp`, `rsp` and `rip` (x86-64
/// `struct sigcontext` after `uc_flags`, `uc_link` and `uc_stack`): what
/// glibc's `__restore_rt` CFI says too.
const UC_RBP: u64 = 120;
const UC_RSP: u64 = 160;
const UC_RIP: u64 = 168;

#[inline(always)]
fn apply(walk: &mut Walk, rule: UnwindRule) -> i64 {
    let (sp, bp, pc) = (walk.sp, walk.bp, walk.pc);
    let cfa = match rule.cfa_kind {
        k if k == CfaKind::Rsp as u8 => sp.wrapping_add(rule.cfa_offset as i64 as u64),
        k if k == CfaKind::Rbp as u8 => {
            if walk.flags & BP_UNKNOWN != 0 {
                return stop(walk, Truncation::Unsupported);
            }
            walk.bp_use = walk.len;
            bp.wrapping_add(rule.cfa_offset as i64 as u64)
        }
        k if k == CfaKind::Plt as u8 => {
            let pushed = if (pc & 15) as i32 >= rule.cfa_offset { 8 } else { 0 };
            sp.wrapping_add(8 + pushed)
        }
        k if k == CfaKind::End as u8 => return STOP,
        k if k == CfaKind::Signal as u8 => {
            let (Some(nbp), Some(nsp), Some(npc)) = (
                base::read(walk, sp.wrapping_add(UC_RBP)),
                base::read(walk, sp.wrapping_add(UC_RSP)),
                base::read(walk, sp.wrapping_add(UC_RIP)),
            ) else {
                return stop(walk, Truncation::ReadFailed);
            };
            if npc == 0 {
                return STOP;
            }
            walk.sp = nsp;
            walk.bp = nbp;
            walk.pc = npc;
            walk.flags = (walk.flags & !BP_UNKNOWN) | PC_EXACT;
            return CONTINUE;
        }
        k if k == CfaKind::None as u8 => return stop(walk, Truncation::NoRule),
        _ => return stop(walk, Truncation::Unsupported),
    };
    if cfa <= sp {
        return stop(walk, Truncation::BadFrame);
    }
    let ra = if rule.rbp_kind == RbpKind::AtCfa as u8 && rule.rbp_offset == -16 {
        // The usual `push rbp` frame: the saved rbp sits right below the
        // return address, and one read takes both.
        let Some([nbp, ra]) = base::read_pair(walk, cfa.wrapping_sub(16)) else {
            return stop(walk, Truncation::ReadFailed);
        };
        walk.bp = nbp;
        walk.flags &= !BP_UNKNOWN;
        ra
    } else {
        let Some(ra) = base::read(walk, cfa.wrapping_sub(8)) else { return stop(walk, Truncation::ReadFailed) };
        if rule.rbp_kind == RbpKind::AtCfa as u8 {
            let Some(nbp) = base::read(walk, cfa.wrapping_add(rule.rbp_offset as i64 as u64)) else {
                return stop(walk, Truncation::ReadFailed);
            };
            walk.bp = nbp;
            walk.flags &= !BP_UNKNOWN;
        } else if rule.rbp_kind == RbpKind::Unsupported as u8 {
            walk.flags |= BP_UNKNOWN;
        }
        ra
    };
    walk.sp = cfa;
    walk.pc = ra;
    walk.flags &= !(PC_EXACT | AT_ENTRY);
    if ra == 0 {
        return STOP;
    }
    CONTINUE
}

/// One frame-pointer step, for code without a table: the caller's frame
/// pointer and return address are the two words at `rbp`.
#[inline(always)]
fn frame_pointer_step(walk: &mut Walk) -> i64 {
    if walk.mode == UnwindMode::Tables as u32 {
        return stop(walk, Truncation::NoTable);
    }
    walk.flags |= FELL_BACK;
    if walk.flags & AT_ENTRY != 0 && walk.len == 1 {
        // A function's first instruction: its caller's return address is
        // at `sp` and `rbp` is still the caller's.
        let Some(ra) = read(walk.sp) else { return STOP };
        if ra == 0 {
            return STOP;
        }
        walk.sp = walk.sp.wrapping_add(8);
        walk.pc = ra;
        walk.flags &= !(PC_EXACT | AT_ENTRY);
        return CONTINUE;
    }
    let bp = walk.bp;
    // The end of a frame-pointer chain (rbp 0, as `_start` leaves it) or a
    // register that is not one: the walk ends as the kernel's would.
    if walk.flags & BP_UNKNOWN != 0 || bp == 0 || bp < walk.sp {
        return STOP;
    }
    let Some([next_bp, ra]) = read_pair(bp) else { return STOP };
    if ra == 0 {
        return STOP;
    }
    walk.bp = next_bp;
    walk.sp = bp.wrapping_add(16);
    walk.pc = ra;
    walk.flags &= !PC_EXACT;
    CONTINUE
}
