//! stackwatch's kernel side: a `perf_event` program run by the CPU-clock
//! software event on every online CPU.
//!
//! For each sample of a target task it reads the user and kernel stacks with
//! `bpf_get_stack`, stores each distinct stack once in `STACKS` (keyed by a
//! 64-bit hash of its frames, so unlike a `STACK_TRACE` map two stacks never
//! evict each other) and counts the sample in `COUNTS` under
//! (pid, tid, comm, user stack, kernel stack). Filtering by pid set or cgroup
//! happens here, before any stack is walked. Every sample that cannot be kept
//! whole is counted in the per-CPU `STATS` map; nothing is dropped silently.
//!
//! Every program first checks the capture window (`WINDOW`, see
//! `profiler_common::Window`): outside it, an event costs one clock read and
//! one array lookup and changes nothing, so the end of a capture is exact
//! however long user space takes to notice it and to detach.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The BPF target has no `AtomicU64::fetch_add`; the intrinsic lowers to the
// BPF atomic add instruction.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod program {
    use core::intrinsics::{atomic_xadd, AtomicOrdering};

    use aya_ebpf::{
        bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
        helpers::{
            bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_user,
            generated::{
                bpf_get_attach_cookie, bpf_get_current_ancestor_cgroup_id, bpf_get_current_task, bpf_get_prandom_u32,
                bpf_get_stack, bpf_ktime_get_ns,
            },
        },
        macros::{btf_tracepoint, map, perf_event, uprobe},
        maps::{Array, HashMap, PerCpuArray},
        programs::{BtfTracePointContext, PerfEventContext, ProbeContext},
        EbpfContext,
    };
    use aya_log_ebpf::warn;
    use profiler_common::{
        AllocValue, Config, FilterMode, OffCpuStart, OffCpuValue, SampleKey, StackRecord, Stat, Window,
        ALLOC_COUNTS_MAP_ENTRIES, COUNTS_MAP_ENTRIES, FAULT_COUNTS_MAP_ENTRIES, GO_CLASS_TO_NPAGES, GO_CLASS_TO_SIZE,
        GO_PROBE_ALLOC_LARGE, MAX_STACK_DEPTH, OFFCPU_COUNTS_MAP_ENTRIES, OFFCPU_START_MAP_ENTRIES, STACKS_MAP_ENTRIES,
        STACK_ID_LOST, STACK_ID_NONE, STATS_MAP_ENTRIES, TARGET_PIDS_MAP_ENTRIES,
    };

    /// Written by the loader before the program is loaded (see `Config`).
    #[unsafe(no_mangle)]
    static CONFIG: Config = Config::all();

    /// `BPF_F_NO_PREALLOC`: stacks and sample counts only cost memory once
    /// seen (the loader primes the per-CPU element caches before attaching).
    const BPF_F_NO_PREALLOC: u32 = 1;

    #[map]
    static STACKS: HashMap<u64, StackRecord> = HashMap::with_max_entries(STACKS_MAP_ENTRIES, BPF_F_NO_PREALLOC);

    #[map]
    static COUNTS: HashMap<SampleKey, u64> = HashMap::with_max_entries(COUNTS_MAP_ENTRIES, BPF_F_NO_PREALLOC);

    #[map]
    static TARGET_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(TARGET_PIDS_MAP_ENTRIES, 0);

    #[map]
    static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_MAP_ENTRIES, 0);

    #[map]
    static OFFCPU_START: HashMap<u64, OffCpuStart> = HashMap::with_max_entries(OFFCPU_START_MAP_ENTRIES, 0);

    #[map]
    static OFFCPU_COUNTS: HashMap<SampleKey, OffCpuValue> = HashMap::with_max_entries(OFFCPU_COUNTS_MAP_ENTRIES, 0);

    #[map]
    static FAULT_COUNTS: HashMap<SampleKey, u64> = HashMap::with_max_entries(FAULT_COUNTS_MAP_ENTRIES, 0);

    #[map]
    static ALLOC_COUNTS: HashMap<SampleKey, AllocValue> = HashMap::with_max_entries(ALLOC_COUNTS_MAP_ENTRIES, 0);

    /// The capture window; all zeros (closed) until user space opens it.
    #[map]
    static WINDOW: Array<Window> = Array::with_max_entries(1, 0);

    /// The capture window as it is now.
    #[inline(always)]
    fn window() -> Window {
        match WINDOW.get_ptr(0) {
            // SAFETY: pointer to the map's only value; user space rewrites
            // it as a whole, and each field is read once.
            Some(w) => unsafe { core::ptr::read_volatile(w) },
            None => Window::CLOSED,
        }
    }

    /// Whether an event happening now counts.
    #[inline(always)]
    fn in_window() -> bool {
        // SAFETY: plain helper call.
        window().contains(unsafe { bpf_ktime_get_ns() })
    }

    /// Per-CPU byte countdown to the next `malloc` sample.
    #[map]
    static MALLOC_COUNTDOWN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

    /// Per-CPU buffer `bpf_get_stack` writes into; too large for the 512-byte
    /// BPF stack.
    #[map]
    static SCRATCH: PerCpuArray<StackRecord> = PerCpuArray::with_max_entries(1, 0);

    #[perf_event]
    pub fn cpu_sample(ctx: PerfEventContext) -> u32 {
        match try_cpu_sample(&ctx) {
            Ok(ret) | Err(ret) => ret,
        }
    }

    #[inline(always)]
    fn bump(stat: Stat) -> u64 {
        match STATS.get_ptr_mut(stat as u32) {
            // SAFETY: the pointer is to this CPU's slot of a per-CPU array, and a
            // perf_event program does not nest on one CPU.
            Some(slot) => unsafe {
                let old = *slot;
                *slot = old + 1;
                old
            },
            None => 0,
        }
    }

    #[inline(always)]
    fn wanted(tgid: u32) -> bool {
        // SAFETY: CONFIG is a read-only global the loader fills before load.
        let config = unsafe { core::ptr::read_volatile(&CONFIG) };
        if config.filter_mode == FilterMode::Pids as u32 {
            TARGET_PIDS.get_ptr(tgid).is_some()
        } else if config.filter_mode == FilterMode::Cgroup as u32 {
            // SAFETY: plain helper call with a scalar argument.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(config.cgroup_level as i32) };
            id == config.cgroup_id
        } else {
            true
        }
    }

    /// Reads one stack into the scratch buffer and stores it in `STACKS`.
    /// Returns its id, `STACK_ID_NONE` when there is no such stack (user mode
    /// has no kernel frames, kernel threads no user frames) or
    /// `STACK_ID_LOST` when it could not be kept.
    #[inline(always)]
    fn store_stack<C: EbpfContext>(ctx: &C, user: bool) -> u64 {
        let (flags, lost, truncated) = if user {
            (BPF_F_USER_STACK as u64, Stat::UserStackLost, Stat::UserStackTruncated)
        } else {
            (0, Stat::KernelStackLost, Stat::KernelStackTruncated)
        };
        let Some(buf) = SCRATCH.get_ptr_mut(0) else {
            bump(lost);
            return STACK_ID_LOST;
        };
        // SAFETY: `buf` points to this CPU's scratch record; the size passed
        // is exactly the size of its `ips` array.
        let ret =
            unsafe { bpf_get_stack(ctx.as_ptr(), (*buf).ips.as_mut_ptr().cast(), (MAX_STACK_DEPTH * 8) as u32, flags) };
        if ret == -14 {
            // -EFAULT: no stack of this kind for this sample.
            return STACK_ID_NONE;
        }
        finish_stack(ctx, buf, ret, lost, truncated, 0)
    }

    /// Stores the stack of a probe at a function's first instruction. There
    /// the return address is the word at `sp` and the frame pointer is still
    /// the caller's, so frame-pointer unwinding would skip the caller; the
    /// stack is read one slot in and the return address put back in slot 1.
    #[inline(always)]
    fn store_entry_stack(ctx: &ProbeContext, sp: u64) -> u64 {
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
            return if ret == -14 || ret == 0 {
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
        finish_stack(ctx, buf, ret, lost, truncated, 1)
    }

    /// Hashes the `ret / 8 + extra` frames in `buf` and stores them.
    #[inline(always)]
    fn finish_stack<C: EbpfContext>(
        ctx: &C,
        buf: *mut StackRecord,
        ret: i64,
        lost: Stat,
        truncated: Stat,
        extra: usize,
    ) -> u64 {
        if ret < 0 {
            bump(lost);
            return STACK_ID_LOST;
        }
        let len = (ret as usize / 8 + extra).min(MAX_STACK_DEPTH);
        if len == 0 {
            return STACK_ID_NONE;
        }
        if len >= MAX_STACK_DEPTH - extra {
            bump(truncated);
        }
        // FNV-1a over whole words, then a final avalanche: cheap and good
        // enough that two distinct stacks sharing a 64-bit key is negligible.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ len as u64;
        let mut i = 0;
        while i < MAX_STACK_DEPTH {
            if i >= len {
                break;
            }
            // SAFETY: i < MAX_STACK_DEPTH, the array's length.
            let ip = unsafe { *(*buf).ips.as_ptr().add(i) };
            hash = (hash ^ ip).wrapping_mul(0x0000_0100_0000_01b3);
            i += 1;
        }
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        if hash == STACK_ID_NONE || hash == STACK_ID_LOST {
            hash = 1;
        }
        // SAFETY: as above.
        unsafe { (*buf).len = len as u64 };
        if STACKS.get_ptr(hash).is_some() {
            return hash;
        }
        // SAFETY: `buf` is valid for the whole record.
        // By reference: the 1 KiB record must not be copied onto the 512-byte
        // BPF stack.
        let record: &StackRecord = unsafe { &*buf };
        match STACKS.insert(hash, record, BPF_NOEXIST as u64) {
            // -EEXIST: another CPU stored the same stack just now.
            Ok(()) | Err(-17) => hash,
            Err(err) => {
                if bump(Stat::StackStoreFailed) == 0 {
                    warn!(ctx, "failed to store a stack (error {}): such stacks are counted as lost", err);
                }
                STACK_ID_LOST
            }
        }
    }

    fn try_cpu_sample(ctx: &PerfEventContext) -> Result<u32, u32> {
        if !in_window() {
            return Ok(0);
        }
        count_sample(ctx, in_kernel(ctx), &COUNTS, Stat::Recorded, Stat::CountsMapFull)
    }

    /// Whether the event interrupted kernel code. When it interrupted user
    /// code there is no kernel stack to read (the kernel's callchain code
    /// would return none), so the helper call is skipped: for a CPU-bound
    /// program that is most samples.
    #[inline(always)]
    fn in_kernel(ctx: &PerfEventContext) -> bool {
        // SAFETY: the context of a perf_event program is a
        // `bpf_perf_event_data` whose `regs` the kernel filled; reading a
        // field of it is a plain context access.
        let cs = unsafe { (*ctx.ctx).regs.cs };
        cs & 3 != 3
    }

    /// A page fault of a target task (the event is sampled every N faults by
    /// its period): the stack that touched new memory.
    #[perf_event]
    pub fn fault_sample(ctx: PerfEventContext) -> u32 {
        if !in_window() {
            return 0;
        }
        match count_sample(&ctx, in_kernel(&ctx), &FAULT_COUNTS, Stat::FaultRecorded, Stat::FaultCountsMapFull) {
            Ok(ret) | Err(ret) => ret,
        }
    }

    /// Builds the aggregation key of the current task: ids, comm and both
    /// stacks (the kernel one only if `kernel`). `None` for the idle task
    /// and tasks outside the target.
    #[inline(always)]
    fn current_key<C: EbpfContext>(ctx: &C, kernel: bool) -> Option<SampleKey> {
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
        Some(SampleKey {
            pid: tgid,
            tid,
            user_stack_id: store_stack(ctx, true),
            kernel_stack_id: if kernel { store_stack(ctx, false) } else { STACK_ID_NONE },
            comm: bpf_get_current_comm().unwrap_or_default(),
        })
    }

    #[inline(always)]
    fn count_sample<C: EbpfContext>(
        ctx: &C,
        kernel: bool,
        counts: &HashMap<SampleKey, u64>,
        recorded: Stat,
        full: Stat,
    ) -> Result<u32, u32> {
        let Some(key) = current_key(ctx, kernel) else { return Ok(0) };
        if let Some(count) = counts.get_ptr_mut(key) {
            // SAFETY: the pointer is to a live map value; the add is atomic.
            unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, 1) };
        } else {
            match counts.insert(key, 1u64, BPF_NOEXIST as u64) {
                Ok(()) => {}
                Err(-17) => {
                    if let Some(count) = counts.get_ptr_mut(key) {
                        // SAFETY: as above.
                        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, 1) };
                    }
                }
                Err(_) => {
                    if bump(full) == 0 {
                        warn!(ctx, "sample map full: later samples are lost (counted)");
                    }
                    return Err(0);
                }
            }
        }
        bump(recorded);
        Ok(0)
    }

    /// Aggregation key for an allocation at a function entry.
    #[inline(always)]
    fn entry_key(ctx: &ProbeContext) -> Option<SampleKey> {
        let pid_tgid = bpf_get_current_pid_tgid();
        // SAFETY: `regs` is the probe's register set.
        let sp = unsafe { (*ctx.regs).rsp };
        Some(SampleKey {
            pid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            user_stack_id: store_entry_stack(ctx, sp),
            kernel_stack_id: STACK_ID_NONE,
            comm: bpf_get_current_comm().unwrap_or_default(),
        })
    }

    #[inline(always)]
    fn add_to(v: *mut AllocValue, objects: u64, bytes: u64) {
        // SAFETY: `v` is a live map value; atomic adds.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).objects, objects);
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).bytes, bytes);
        }
    }

    #[inline(always)]
    fn add_alloc(ctx: &ProbeContext, key: SampleKey, objects: u64, bytes: u64) {
        if let Some(v) = ALLOC_COUNTS.get_ptr_mut(key) {
            add_to(v, objects, bytes);
        } else {
            match ALLOC_COUNTS.insert(key, AllocValue { objects, bytes }, BPF_NOEXIST as u64) {
                Ok(()) => {}
                Err(-17) => {
                    if let Some(v) = ALLOC_COUNTS.get_ptr_mut(key) {
                        add_to(v, objects, bytes);
                    }
                }
                Err(_) => {
                    if bump(Stat::AllocCountsMapFull) == 0 {
                        warn!(ctx, "allocation map full: later allocation samples are lost (counted)");
                    }
                    return;
                }
            }
        }
        bump(Stat::AllocRecorded);
    }

    /// Sample points inside one allocation counted one by one; past this
    /// many (an allocation of over ~16 periods) the rest are counted at the
    /// mean spacing.
    const MAX_POINTS_COUNTED: u32 = 16;

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

    /// `malloc(size)`: sampled by bytes. Sample points are laid on the
    /// stream of bytes a CPU's target processes allocate, a random gap of
    /// mean `malloc_sample_bytes` apart (see `next_gap`); a per-CPU
    /// countdown holds the distance to the next one. An allocation holding
    /// sample points is sampled and stands for `period` bytes per point (and
    /// `bytes / size` objects). Unsampled calls skip the stack walk and map
    /// update, but every call pays the uprobe trap itself (see
    /// docs/benchmarks.md).
    #[uprobe]
    pub fn malloc_entry(ctx: ProbeContext) -> u32 {
        let size: u64 = ctx.arg(0).unwrap_or(0);
        if size == 0 || !in_window() || !wanted((bpf_get_current_pid_tgid() >> 32) as u32) {
            return 0;
        }
        // SAFETY: CONFIG is a read-only global the loader fills before load.
        let period = unsafe { core::ptr::read_volatile(&CONFIG) }.malloc_sample_bytes.max(1);
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
        if let Some(key) = entry_key(&ctx) {
            add_alloc(&ctx, key, objects, bytes);
        }
        0
    }

    /// The Go runtime's allocation slow paths (see `GO_PROBE_REFILL` and
    /// `GO_PROBE_ALLOC_LARGE`): a span refill stands for the span's bytes
    /// and objects, a large allocation for itself.
    #[uprobe]
    pub fn go_alloc(ctx: ProbeContext) -> u32 {
        if !in_window() || !wanted((bpf_get_current_pid_tgid() >> 32) as u32) {
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
        if let Some(key) = entry_key(&ctx) {
            add_alloc(&ctx, key, objects, bytes);
        }
        0
    }

    /// `TASK_DEAD`: the final switch-out of an exiting task.
    const TASK_DEAD: u64 = 0x80;

    /// Off-CPU time: when a target thread is switched out, remember when and
    /// where (its stacks); when it is switched in again, add the interval to
    /// that stack. Threads are keyed by `task_struct` address, which needs no
    /// kernel-version-specific field offsets.
    ///
    /// Intervals are clipped to the window: switch-outs are recorded from the
    /// moment it is armed (before it opens, so a thread asleep at the start
    /// is charged from the start), an interval that ends before the window
    /// opens is dropped, and once the window is over nothing changes: the
    /// threads still switched out are charged up to its end by user space.
    #[btf_tracepoint(function = "sched_switch")]
    pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
        // sched_switch(bool preempt, struct task_struct *prev,
        //              struct task_struct *next, unsigned int prev_state)
        let next: u64 = ctx.arg(2);
        let prev_state: u64 = ctx.arg(3);
        // SAFETY: plain helper calls.
        let now = unsafe { bpf_ktime_get_ns() };
        let window = window();
        if window.is_over(now) {
            return 0;
        }
        switch_in(&ctx, next, now, &window);
        if prev_state & TASK_DEAD == 0 {
            // SAFETY: plain helper call; `current` is still `prev` here.
            let prev = unsafe { bpf_get_current_task() };
            switch_out(&ctx, prev, now);
        }
        0
    }

    #[inline(always)]
    fn switch_out(ctx: &BtfTracePointContext, task: u64, now: u64) {
        // A task switching out is always in the kernel (in `schedule`).
        let Some(key) = current_key(ctx, true) else { return };
        let start = OffCpuStart { ts: now, key };
        if OFFCPU_START.insert(task, start, 0).is_err() && bump(Stat::OffCpuStartMapFull) == 0 {
            warn!(ctx, "off-cpu start map full: some blocked intervals are not tracked (counted)");
        }
    }

    #[inline(always)]
    fn switch_in(ctx: &BtfTracePointContext, task: u64, now: u64, window: &Window) {
        let Some(start) = OFFCPU_START.get_ptr(task) else { return };
        // SAFETY: pointer to a live map value; copied out before removal.
        let start = unsafe { *start };
        let _ = OFFCPU_START.remove(task);
        // `now` is before the window's end (checked by the caller); an
        // interval over before the window opened counts nothing.
        let delta = window.overlap_ns(start.ts, now);
        if delta == 0 {
            return;
        }
        // SAFETY: CONFIG is a read-only global the loader fills before load.
        let config = unsafe { core::ptr::read_volatile(&CONFIG) };
        if delta < config.offcpu_min_ns {
            bump(Stat::OffCpuShort);
            return;
        }
        if let Some(v) = OFFCPU_COUNTS.get_ptr_mut(start.key) {
            // SAFETY: live map value; atomic adds.
            unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).count, 1);
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).ns, delta);
            }
        } else {
            let value = OffCpuValue { count: 1, ns: delta };
            match OFFCPU_COUNTS.insert(start.key, value, BPF_NOEXIST as u64) {
                Ok(()) => {}
                Err(-17) => {
                    if let Some(v) = OFFCPU_COUNTS.get_ptr_mut(start.key) {
                        // SAFETY: as above.
                        unsafe {
                            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).count, 1);
                            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).ns, delta);
                        }
                    }
                }
                Err(_) => {
                    if bump(Stat::OffCpuCountsMapFull) == 0 {
                        warn!(ctx, "off-cpu map full: later intervals are lost (counted)");
                    }
                    return;
                }
            }
        }
        bump(Stat::OffCpuRecorded);
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
