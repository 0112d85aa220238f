//! Attaching the loaded programs to their events, and detaching them:
//! perf events on every online CPU (the CPU clock, page faults), the
//! `sched_switch` tracepoint, and uprobes at the sites a profile kind
//! chose. Which events a capture needs is the profile kinds' business
//! (`crate::kinds`); this module only knows how.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context as _, Result};
use aya::programs::{
    perf_event::{PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent},
    uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    BtfTracePoint, PerfEvent, RawTracePoint, UProbe,
};
use profiler_common::{Window, PROG_CPU_SAMPLE, PROG_FAULT_SAMPLE, PROG_PROCESS_EXEC, PROG_SCHED_SWITCH};
use tracing::{debug, warn};

use super::loader::{privilege_aware, typed_program, ExecHook, Loader};
use crate::addr::FileOffset;
use crate::ids::Pid;

/// One uprobe to attach: a program of the object at a place in a file,
/// limited to one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UprobeSite {
    /// The uprobe program to run there (`PROG_*` in `profiler_common`).
    pub program: &'static str,
    /// File to probe, as reachable from here (through `/proc/<pid>/root` so
    /// binaries in containers resolve).
    pub path: PathBuf,
    /// Symbol to attach to (and to name in warnings).
    pub symbol: &'static str,
    /// Where in the file to attach: `None` for the symbol's entry (found by
    /// the kernel's loader from the dynamic symbols), or a file offset.
    pub offset: Option<FileOffset>,
    /// Process the probe is limited to.
    pub pid: Pid,
    /// Attach cookie the program reads.
    pub cookie: u64,
}

impl Loader {
    /// Attaches the `sched_process_exec` hook (when it is loaded) for as
    /// long as anything samples user stacks; an idle daemon keeps no link.
    /// Attached again after an idle time, it has the table manager re-read
    /// every known process's mappings: one may have run a new program
    /// meanwhile. A failure is logged: stacks of such processes heal when
    /// a pc falls outside the old mappings.
    fn follow_exec(&mut self) {
        if matches!(self.exec, ExecHook::Absent | ExecHook::Attached(_)) {
            return;
        }
        let attached = typed_program::<RawTracePoint>(&mut self.ebpf, PROG_PROCESS_EXEC)
            .and_then(|program| program.attach("sched_process_exec").map_err(|e| anyhow!(e)));
        match attached {
            Ok(link) => {
                if matches!(self.exec, ExecHook::WasAttached) {
                    if let Some(tables) = &self.tables {
                        tables.refresh_all();
                    }
                }
                self.exec = ExecHook::Attached(link);
            }
            Err(e) => warn!("cannot follow exec (the sched_process_exec raw tracepoint): {e:#}"),
        }
    }

    /// Starts CPU sampling: one CPU-clock perf event per online CPU, every
    /// `1/frequency_hz` seconds of CPU time.
    pub(crate) fn attach_cpu(&mut self, frequency_hz: u64) -> Result<()> {
        if !self.cpu_links.is_empty() {
            return Ok(());
        }
        self.follow_exec();
        let period_ns = 1_000_000_000 / frequency_hz.max(1);
        let links = self.attach_per_cpu(PROG_CPU_SAMPLE, SoftwareEvent::CpuClock, period_ns, "perf event")?;
        debug!(cpus = links.len(), period_ns, "perf events attached");
        self.cpu_links = links;
        Ok(())
    }

    /// Starts page-fault sampling (loaded with [`super::Programs::faults`]):
    /// one sample every `period` faults of any task, per CPU.
    pub(crate) fn attach_faults(&mut self, period: u64) -> Result<()> {
        if !self.fault_links.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(self.programs.faults, "the page-fault program was not loaded");
        self.follow_exec();
        self.fault_links =
            self.attach_per_cpu(PROG_FAULT_SAMPLE, SoftwareEvent::PageFaults, period.max(1), "the page-fault event")?;
        Ok(())
    }

    /// Attaches the perf_event program `name` to `event` on every online
    /// CPU, sampling every `period` events; on a failure the events attached
    /// so far are detached again. The stack map's (and for the CPU sampler
    /// the sample map's) allocator is primed first.
    fn attach_per_cpu(
        &mut self,
        name: &str,
        event: SoftwareEvent,
        period: u64,
        what: &str,
    ) -> Result<Vec<PerfEventLinkId>> {
        let cpus =
            aya::util::online_cpus().map_err(|(path, e)| anyhow!("failed to read online CPUs from `{path}`: {e}"))?;
        self.prime_stack_allocator(&cpus);
        if name == PROG_CPU_SAMPLE {
            self.prime_counts_allocator(&cpus);
        }
        let program: &mut PerfEvent = typed_program(&mut self.ebpf, name)?;
        let mut links = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let scope = PerfEventScope::AllProcessesOneCpu { cpu };
            match program.attach(PerfEventConfig::Software(event), scope, SamplePolicy::Period(period), false) {
                Ok(link) => links.push(link),
                Err(e) => {
                    for link in links {
                        let _ = program.detach(link);
                    }
                    return Err(privilege_aware(anyhow!(e), &format!("failed to attach {what} on cpu {cpu}")));
                }
            }
        }
        Ok(links)
    }

    /// Starts off-CPU tracking (loaded with [`super::Programs::offcpu`]).
    pub(crate) fn attach_offcpu(&mut self) -> Result<()> {
        if self.offcpu_link.is_some() {
            return Ok(());
        }
        anyhow::ensure!(self.programs.offcpu, "the off-CPU program was not loaded");
        self.follow_exec();
        self.prime_stack_allocator_all();
        if self.window.is_none() {
            // Switch-outs from now on are tracked, so threads already
            // asleep when the window opens are charged from its start.
            self.write_window(Window::ARMED)?;
        }
        let program: &mut BtfTracePoint = typed_program(&mut self.ebpf, PROG_SCHED_SWITCH)?;
        let link = program
            .attach()
            .map_err(|e| privilege_aware(anyhow!(e), "failed to attach to the sched_switch tracepoint"))?;
        self.offcpu_link = Some(link);
        Ok(())
    }

    /// Attaches the uprobes at `sites` (loaded with [`Programs::alloc`]). A
    /// site that cannot be probed (no such symbol, e.g. a stripped binary)
    /// is skipped with a warning; returns how many were attached.
    pub(crate) fn attach_uprobes(&mut self, sites: &[UprobeSite]) -> Result<usize> {
        anyhow::ensure!(self.programs.alloc, "the allocation probes were not loaded");
        self.follow_exec();
        self.prime_stack_allocator_all();
        let mut attached = 0;
        for site in sites {
            let name = site.program;
            let program: &mut UProbe = typed_program(&mut self.ebpf, name)?;
            let Some(pid) = std::num::NonZeroU32::new(site.pid.get()) else { continue };
            let location = match site.offset {
                Some(offset) => UProbeAttachLocation::AbsoluteOffset(offset.get()),
                None => UProbeAttachLocation::Symbol(site.symbol),
            };
            let point = UProbeAttachPoint { location, cookie: Some(site.cookie) };
            match program.attach([point], &site.path, UProbeScope::OneProcess(pid)) {
                Ok(link) => {
                    self.uprobe_links.push((name, link));
                    attached += 1;
                }
                Err(e) => warn!(
                    "cannot probe `{}` in `{}` (pid {}): {e}; its events are not sampled",
                    site.symbol,
                    site.path.display(),
                    site.pid
                ),
            }
        }
        Ok(attached)
    }

    /// Stops all sampling; the maps keep what was collected.
    pub(crate) fn detach(&mut self) -> Result<()> {
        self.detach_in_background()?.wait()
    }

    /// Stops all sampling, leaving the allocation uprobes to detach on a
    /// thread of their own: each waits for an RCU grace period, from 0.1 s
    /// on an idle host to seconds on a crowded one, which the caller can
    /// spend draining and writing. Close the window first, so the probes
    /// still attached count nothing; wait on the result before exiting.
    ///
    /// The programs that run on every context switch, page fault and sample
    /// go first: each detaches in milliseconds, and until then they cost
    /// their target something even with the window closed.
    pub(crate) fn detach_in_background(&mut self) -> Result<Detaching> {
        let started = Instant::now();
        if let Some(link) = self.offcpu_link.take() {
            let program: &mut BtfTracePoint = typed_program(&mut self.ebpf, PROG_SCHED_SWITCH)?;
            program.detach(link).context("failed to detach the sched_switch program")?;
        }
        if matches!(self.exec, ExecHook::Attached(_)) {
            if let ExecHook::Attached(link) = std::mem::replace(&mut self.exec, ExecHook::WasAttached) {
                let program: &mut RawTracePoint = typed_program(&mut self.ebpf, PROG_PROCESS_EXEC)?;
                program.detach(link).context("failed to detach the sched_process_exec program")?;
            }
        }
        for (name, links) in [(PROG_CPU_SAMPLE, &mut self.cpu_links), (PROG_FAULT_SAMPLE, &mut self.fault_links)] {
            let links = std::mem::take(links);
            if links.is_empty() {
                continue;
            }
            let program: &mut PerfEvent = typed_program(&mut self.ebpf, name)?;
            for link in links {
                program.detach(link).with_context(|| format!("failed to detach a `{name}` perf event"))?;
            }
        }
        if self.uprobe_links.is_empty() {
            return Ok(Detaching { thread: None });
        }
        debug!(elapsed_ms = started.elapsed().as_millis() as u64, "events detached");
        let mut probes = Vec::with_capacity(self.uprobe_links.len());
        for (name, id) in std::mem::take(&mut self.uprobe_links) {
            let program: &mut UProbe = typed_program(&mut self.ebpf, name)?;
            probes.push(program.take_link(id).context("failed to detach an allocation probe")?);
        }
        let spawned = std::thread::Builder::new().name("detach-probes".to_owned()).spawn(move || {
            let started = Instant::now();
            let count = probes.len();
            let result = detach_all(probes);
            debug!(probes = count, elapsed_ms = started.elapsed().as_millis() as u64, "allocation probes detached");
            result
        });
        // Without a thread the probes were dropped with the closure, which
        // detached them here.
        Ok(Detaching { thread: spawned.ok() })
    }
}

/// Allocation probes being detached; see [`Loader::detach_in_background`].
#[must_use = "wait until the probes are detached"]
pub(crate) struct Detaching {
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Detaching {
    /// Waits until every probe is detached.
    pub(crate) fn wait(mut self) -> Result<()> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow!("the thread detaching the allocation probes panicked")),
        }
    }
}

impl Drop for Detaching {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Detaches uprobe links in parallel: each waits for its own grace period,
/// and the waits overlap. A few threads are enough for that; more would only
/// contend on the same locks.
fn detach_all(links: Vec<aya::programs::uprobe::UProbeLink>) -> Result<()> {
    use aya::programs::links::Link as _;
    const THREADS: usize = 8;
    if links.len() <= 1 {
        for link in links {
            link.detach().context("failed to detach an allocation probe")?;
        }
        return Ok(());
    }
    let per_thread = links.len().div_ceil(THREADS);
    let mut chunks: Vec<Vec<_>> = Vec::new();
    let mut links = links.into_iter().peekable();
    while links.peek().is_some() {
        chunks.push(links.by_ref().take(per_thread).collect());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || -> Result<()> {
                    for link in chunk {
                        link.detach().context("failed to detach an allocation probe")?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for handle in handles {
            let outcome = handle.join().unwrap_or_else(|_| Err(anyhow!("a detaching thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}
