//! stackwatch's kernel side: the programs' entry points. Each is thin — it
//! hands its context to the module that does the work and turns the
//! outcome into the program's return value; nothing panics.
//!
//! - `cpu_sample` (perf_event, CPU clock on every CPU) and `fault_sample`
//!   (perf_event, page faults): [`perf`];
//! - `history_sample` (perf_event, CPU clock at a low rate, only with
//!   `watch --history`): the flight recorder, [`history`];
//! - `sched_switch` (BTF tracepoint): off-CPU intervals, [`offcpu`];
//! - `malloc_entry`, `calloc_entry`, `realloc_entry`, `free_entry`,
//!   `go_alloc` (uprobes) and `alloc_return` (uretprobe): allocations and
//!   what is still held, [`alloc`].
//!
//! Every sample of a target task (the [`filter`] runs before any stack is
//! walked) is counted under its key ([`key`]: ids, comm, the ids of its
//! stacks, stored once each by [`stack`]) with one race-free upsert
//! ([`count`]). A sample of a Python process also carries the Python
//! frames of its thread ([`python`]). Every event that cannot be kept whole is counted in
//! `STATS` ([`stats`]); nothing is dropped silently. Every program first
//! checks the capture window ([`maps::window`], see
//! `profiler_common::Window`): outside it, an event costs one clock read
//! and one array lookup and changes nothing, so the end of a capture is
//! exact however long user space takes to notice it and to detach.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The BPF target has no `AtomicU64::fetch_add`; the intrinsic lowers to the
// BPF atomic add instruction.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", expect(internal_features, reason = "core_intrinsics for BPF atomic adds"))]
#![cfg_attr(
    not(target_arch = "bpf"),
    expect(unused_crate_dependencies, reason = "the programs are built for BPF only; the host build is empty")
)]

// The package's (host-side, empty) library: not the programs'.
#[cfg(target_arch = "bpf")]
use profiler_ebpf as _;

#[cfg(target_arch = "bpf")]
mod alloc;
#[cfg(target_arch = "bpf")]
mod base;
#[cfg(target_arch = "bpf")]
mod count;
#[cfg(target_arch = "bpf")]
mod errno;
#[cfg(target_arch = "bpf")]
mod filter;
#[cfg(target_arch = "bpf")]
mod history;
#[cfg(target_arch = "bpf")]
mod key;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod offcpu;
#[cfg(target_arch = "bpf")]
mod perf;
#[cfg(target_arch = "bpf")]
mod python;
#[cfg(target_arch = "bpf")]
mod record;
#[cfg(target_arch = "bpf")]
mod stack;
#[cfg(target_arch = "bpf")]
mod stats;
#[cfg(target_arch = "bpf")]
mod unwind;
#[cfg(target_arch = "bpf")]
mod usermem;
#[cfg(target_arch = "bpf")]
mod walk;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        macros::{btf_tracepoint, perf_event, raw_tracepoint, uprobe, uretprobe},
        programs::{BtfTracePointContext, PerfEventContext, ProbeContext, RawTracePointContext, RetProbeContext},
    };

    #[perf_event]
    fn cpu_sample(ctx: PerfEventContext) -> u32 {
        match crate::perf::cpu_sample(&ctx) {
            Ok(ret) | Err(ret) => ret,
        }
    }

    #[perf_event]
    fn fault_sample(ctx: PerfEventContext) -> u32 {
        match crate::perf::fault_sample(&ctx) {
            Ok(ret) | Err(ret) => ret,
        }
    }

    #[perf_event]
    fn history_sample(ctx: PerfEventContext) -> u32 {
        crate::history::history_sample(&ctx)
    }

    #[uprobe]
    fn malloc_entry(ctx: ProbeContext) -> u32 {
        crate::alloc::malloc_entry(&ctx)
    }

    #[uprobe]
    fn calloc_entry(ctx: ProbeContext) -> u32 {
        crate::alloc::calloc_entry(&ctx)
    }

    #[uprobe]
    fn realloc_entry(ctx: ProbeContext) -> u32 {
        crate::alloc::realloc_entry(&ctx)
    }

    #[uprobe]
    fn free_entry(ctx: ProbeContext) -> u32 {
        crate::alloc::free_entry(&ctx)
    }

    #[uretprobe]
    fn alloc_return(ctx: RetProbeContext) -> u32 {
        crate::alloc::alloc_return(&ctx)
    }

    #[uprobe]
    fn go_alloc(ctx: ProbeContext) -> u32 {
        crate::alloc::go_alloc(&ctx)
    }

    #[btf_tracepoint(function = "sched_switch")]
    fn sched_switch(ctx: BtfTracePointContext) -> u32 {
        crate::offcpu::sched_switch(&ctx)
    }

    #[raw_tracepoint(tracepoint = "sched_process_exec")]
    fn process_exec(_ctx: RawTracePointContext) -> u32 {
        crate::unwind::process_exec();
        0
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
