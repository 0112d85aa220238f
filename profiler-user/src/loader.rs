//! Owns the eBPF object: loads the embedded program with the target filter,
//! attaches it to a CPU-clock perf event on every online CPU, and gives typed
//! access to its maps.
//!
//! Loading is separate from attaching so a daemon can load (and so verify the
//! program against this kernel) once at start and sample only while capturing.
//!
//! Attaching is separate from counting: the programs count only inside the
//! capture window (see [`profiler_common::Window`]), opened once everything
//! is attached and enforced by the kernel, so neither attaching nor
//! detaching (a uprobe takes from 0.1 s to minutes to detach on a crowded
//! host) nor a late wake-up of this process stretches what a capture counts.

use std::{
    collections::HashSet,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{
        perf_event::{PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent},
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
        BtfTracePoint, PerfEvent, UProbe,
    },
    Btf, Ebpf, EbpfLoader,
};
use profiler_common::{
    AllocValue, Config, FilterMode, OffCpuStart, OffCpuValue, SampleKey, StackRecord, Stat, Window, MAP_ALLOC_COUNTS,
    MAP_COUNTS, MAP_FAULT_COUNTS, MAP_OFFCPU_COUNTS, MAP_OFFCPU_START, MAP_STACKS, MAP_STATS, MAP_TARGET_PIDS,
    MAP_WINDOW, PROG_CPU_SAMPLE, PROG_FAULT_SAMPLE, PROG_GO_ALLOC, PROG_MALLOC_ENTRY, PROG_SCHED_SWITCH,
    TARGET_PIDS_MAP_ENTRIES,
};
use tracing::{debug, warn};

use crate::profile::capture::CaptureWindow;
use crate::sys::{monotonic_ns, raise_memlock_limit};
use crate::target::Filter;

/// The eBPF object built from `profiler-ebpf` by `build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// Hint appended to errors that mean "not allowed".
const PRIVILEGE_HINT: &str = "run as root or grant CAP_BPF and CAP_PERFMON; `stackwatch doctor` checks the host";

/// Per-capture counters summed over CPUs, indexed like [`Stat`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats(pub [u64; Stat::COUNT as usize]);

impl Stats {
    pub fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize]
    }

    /// Counters accumulated since `earlier` was read.
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut out = Stats::default();
        for (i, v) in out.0.iter_mut().enumerate() {
            *v = self.0[i].saturating_sub(earlier.0[i]);
        }
        out
    }
}

/// Which programs besides the CPU sampler to load, and their settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Programs {
    /// The `sched_switch` off-CPU program (needs BTF).
    pub offcpu: bool,
    /// The page-fault sampler.
    pub faults: bool,
    /// The allocation uprobes (`malloc`, Go's `mProf_Malloc`).
    pub alloc: bool,
    /// Off-CPU intervals shorter than this are not recorded.
    pub offcpu_min_ns: u64,
    /// `malloc` sampling period in bytes.
    pub malloc_sample_bytes: u64,
}

impl Default for Programs {
    fn default() -> Self {
        Self { offcpu: false, faults: false, alloc: false, offcpu_min_ns: 1000, malloc_sample_bytes: 512 * 1024 }
    }
}

/// The loaded program, its maps and (while sampling) its perf-event links.
pub struct Loader {
    ebpf: Ebpf,
    links: Vec<PerfEventLinkId>,
    fault_links: Vec<PerfEventLinkId>,
    offcpu_link: Option<aya::programs::tp_btf::BtfTracePointLinkId>,
    alloc_links: Vec<(&'static str, UProbeLinkId)>,
    /// The open (or last) capture window; `None` while it is closed.
    window: Option<CaptureWindow>,
    programs: Programs,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl Loader {
    /// Loads and verifies the CPU sampler with `filter` compiled into its config.
    pub fn load(filter: &Filter) -> Result<Self> {
        Self::load_with(filter, Programs::default())
    }

    /// Loads and verifies the CPU sampler and the `programs` asked for.
    pub fn load_with(filter: &Filter, programs: Programs) -> Result<Self> {
        raise_memlock_limit();
        let mut config = match filter {
            Filter::All => Config::all(),
            Filter::Pids(_) => Config { filter_mode: FilterMode::Pids as u32, ..Config::all() },
            Filter::Cgroup { id, level } => {
                Config { filter_mode: FilterMode::Cgroup as u32, cgroup_level: *level, cgroup_id: *id, ..Config::all() }
            }
        };
        config.offcpu_min_ns = programs.offcpu_min_ns;
        config.malloc_sample_bytes = programs.malloc_sample_bytes.max(1);
        let mut ebpf_loader = EbpfLoader::new();
        ebpf_loader.override_global(profiler_common::GLOBAL_CONFIG, &config, true);
        // The maps of programs not loaded, and the pid filter outside pid-set
        // mode, are never written: one entry each instead of thousands keeps
        // ~4 MiB of preallocated kernel memory free (measured by `cargo xtask
        // bench`).
        let unused = [
            // Read only in pid-set mode, where the filter mode (a load-time
            // constant) says so.
            (MAP_TARGET_PIDS, matches!(filter, Filter::Pids(_))),
            (MAP_OFFCPU_START, programs.offcpu),
            (MAP_OFFCPU_COUNTS, programs.offcpu),
            (MAP_FAULT_COUNTS, programs.faults),
            (MAP_ALLOC_COUNTS, programs.alloc),
        ];
        for (map, _) in unused.iter().filter(|(_, used)| !used) {
            ebpf_loader.map_max_entries(map, 1);
        }
        let mut ebpf =
            ebpf_loader.load(EBPF_OBJECT).map_err(|e| privilege_aware(anyhow!(e), "failed to load the eBPF object"))?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                warn!("eBPF program logs are unavailable: {e}");
                None
            }
        };
        let program: &mut PerfEvent = typed_program(&mut ebpf, PROG_CPU_SAMPLE)?;
        program.load().map_err(|e| privilege_aware(anyhow!(e), "the kernel rejected the perf_event program"))?;
        if programs.offcpu {
            let btf = Btf::from_sys_fs().context(
                "off-CPU profiling needs kernel BTF (`/sys/kernel/btf/vmlinux`), which this kernel does not provide",
            )?;
            let program: &mut BtfTracePoint = typed_program(&mut ebpf, PROG_SCHED_SWITCH)?;
            program
                .load("sched_switch", &btf)
                .map_err(|e| privilege_aware(anyhow!(e), "the kernel rejected the sched_switch (off-CPU) program"))?;
        }
        if programs.faults {
            let program: &mut PerfEvent = typed_program(&mut ebpf, PROG_FAULT_SAMPLE)?;
            program.load().map_err(|e| privilege_aware(anyhow!(e), "the kernel rejected the page-fault program"))?;
        }
        if programs.alloc {
            for name in [PROG_MALLOC_ENTRY, PROG_GO_ALLOC] {
                let program: &mut UProbe = typed_program(&mut ebpf, name)?;
                program
                    .load()
                    .map_err(|e| privilege_aware(anyhow!(e), &format!("the kernel rejected the `{name}` uprobe")))?;
            }
        }
        let mut loader = Self {
            ebpf,
            links: Vec::new(),
            fault_links: Vec::new(),
            offcpu_link: None,
            alloc_links: Vec::new(),
            window: None,
            programs,
            logger,
        };
        if let Filter::Pids(pids) = filter {
            loader.set_target_pids(pids)?;
        }
        Ok(loader)
    }

    /// Replaces the set of processes the program keeps (for `Filter::Pids`).
    pub fn set_target_pids(&mut self, pids: &[u32]) -> Result<()> {
        if pids.len() > TARGET_PIDS_MAP_ENTRIES as usize {
            anyhow::bail!(
                "{} processes selected, more than the {TARGET_PIDS_MAP_ENTRIES} the filter holds; narrow the target",
                pids.len()
            );
        }
        let mut map: HashMap<&mut MapData, u32, u8> = HashMap::try_from(self.map_mut(MAP_TARGET_PIDS)?)?;
        let wanted: HashSet<u32> = pids.iter().copied().collect();
        let stale: Vec<u32> = map.keys().filter_map(Result::ok).filter(|p| !wanted.contains(p)).collect();
        for pid in stale {
            map.remove(&pid).with_context(|| format!("failed to remove pid {pid} from the filter"))?;
        }
        for pid in wanted {
            map.insert(pid, 1, 0).with_context(|| format!("failed to add pid {pid} to the filter"))?;
        }
        Ok(())
    }

    /// Starts sampling: one CPU-clock perf event per online CPU, every
    /// `1/frequency_hz` seconds of CPU time.
    pub fn attach(&mut self, frequency_hz: u64) -> Result<()> {
        if !self.links.is_empty() {
            return Ok(());
        }
        let cpus =
            aya::util::online_cpus().map_err(|(path, e)| anyhow!("failed to read online CPUs from `{path}`: {e}"))?;
        let period_ns = 1_000_000_000 / frequency_hz.max(1);
        self.prime_stack_allocator(&cpus);
        self.prime_counts_allocator(&cpus);
        let program = self.program_mut()?;
        let mut links = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let link = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Period(period_ns),
                    false,
                )
                .map_err(|e| privilege_aware(anyhow!(e), &format!("failed to attach perf event on cpu {cpu}")));
            match link {
                Ok(link) => links.push(link),
                Err(e) => {
                    for link in links {
                        let _ = program.detach(link);
                    }
                    return Err(e);
                }
            }
        }
        debug!(cpus = links.len(), period_ns, "perf events attached");
        self.links = links;
        Ok(())
    }

    fn prime_stack_allocator_all(&mut self) {
        if let Ok(cpus) = aya::util::online_cpus() {
            self.prime_stack_allocator(&cpus);
        }
    }

    /// `STACKS` is not preallocated: the kernel serves its elements from
    /// small per-CPU caches that are refilled asynchronously, so a burst of
    /// new stacks right after attaching can find a cache empty (ENOMEM, a
    /// lost stack). Inserting and deleting a few elements from each CPU
    /// leaves freed elements in every CPU's cache before the first sample.
    fn prime_stack_allocator(&mut self, cpus: &[u32]) {
        let record = StackRecord { len: 0, ips: [0; profiler_common::MAX_STACK_DEPTH] };
        // Keys the program never produces (hashes are remapped away from 0
        // and u64::MAX, but these are just improbable values).
        self.prime_allocator(MAP_STACKS, cpus, |cpu, i| 0x5354_4143_4b00_0000 | (u64::from(cpu) << 8) | i, record);
    }

    /// [`Self::prime_stack_allocator`] for `COUNTS`, which is not
    /// preallocated either. Only before the CPU sampler is attached: a
    /// drain never sees the short-lived priming entries.
    fn prime_counts_allocator(&mut self, cpus: &[u32]) {
        // pids above the kernel's PID_MAX_LIMIT (2^22): never sampled.
        let key = |cpu: u32, i: u64| SampleKey {
            pid: u32::MAX - cpu,
            tid: u32::MAX - i as u32,
            comm: [0; 16],
            user_stack_id: profiler_common::STACK_ID_NONE,
            kernel_stack_id: profiler_common::STACK_ID_NONE,
        };
        self.prime_allocator(MAP_COUNTS, cpus, key, 0u64);
    }

    /// Inserts and deletes a few elements of map `name` from each of `cpus`.
    fn prime_allocator<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &str,
        cpus: &[u32],
        key: impl Fn(u32, u64) -> K,
        value: V,
    ) {
        const PER_CPU: u64 = 16;
        let Ok(map) = self.map_mut(name) else { return };
        let Ok(mut map) = HashMap::<&mut MapData, K, V>::try_from(map) else { return };
        // SAFETY: sched_getaffinity/sched_setaffinity on the calling thread
        // with a properly sized, zero-initialised cpu_set_t.
        let mut original: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if unsafe { libc::sched_getaffinity(0, size, &mut original) } != 0 {
            return;
        }
        for &cpu in cpus {
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu as usize, &mut set) };
            if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
                continue;
            }
            let keys: Vec<K> = (0..PER_CPU).map(|i| key(cpu, i)).collect();
            for k in &keys {
                let _ = map.insert(k, value, 0);
            }
            for k in &keys {
                let _ = map.remove(k);
            }
        }
        unsafe { libc::sched_setaffinity(0, size, &original) };
    }

    /// Starts off-CPU tracking (loaded with [`Programs::offcpu`]).
    pub fn attach_offcpu(&mut self) -> Result<()> {
        if self.offcpu_link.is_some() {
            return Ok(());
        }
        anyhow::ensure!(self.programs.offcpu, "the off-CPU program was not loaded");
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

    /// Starts page-fault sampling (loaded with [`Programs::faults`]): one
    /// sample every `period` faults of any task, per CPU.
    pub fn attach_faults(&mut self, period: u64) -> Result<()> {
        if !self.fault_links.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(self.programs.faults, "the page-fault program was not loaded");
        let cpus =
            aya::util::online_cpus().map_err(|(path, e)| anyhow!("failed to read online CPUs from `{path}`: {e}"))?;
        self.prime_stack_allocator(&cpus);
        let program: &mut PerfEvent = typed_program(&mut self.ebpf, PROG_FAULT_SAMPLE)?;
        let mut links = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            match program.attach(
                PerfEventConfig::Software(SoftwareEvent::PageFaults),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Period(period.max(1)),
                false,
            ) {
                Ok(link) => links.push(link),
                Err(e) => {
                    for link in links {
                        let _ = program.detach(link);
                    }
                    return Err(privilege_aware(
                        anyhow!(e),
                        &format!("failed to attach the page-fault event on cpu {cpu}"),
                    ));
                }
            }
        }
        self.fault_links = links;
        Ok(())
    }

    /// Attaches the allocation probes at `sites`. A site that cannot be
    /// probed (no such symbol, e.g. a stripped binary) is skipped with a
    /// warning; the sites attached are returned.
    pub fn attach_alloc(&mut self, sites: &[crate::alloc::ProbeSite]) -> Result<Vec<crate::alloc::ProbeSite>> {
        anyhow::ensure!(self.programs.alloc, "the allocation probes were not loaded");
        self.prime_stack_allocator_all();
        let mut attached = Vec::new();
        for site in sites {
            let name = if site.symbol == crate::alloc::MALLOC_SYMBOL { PROG_MALLOC_ENTRY } else { PROG_GO_ALLOC };
            let program: &mut UProbe = typed_program(&mut self.ebpf, name)?;
            let Some(pid) = std::num::NonZeroU32::new(site.pid) else { continue };
            let location = match site.offset {
                Some(offset) => UProbeAttachLocation::AbsoluteOffset(offset),
                None => UProbeAttachLocation::Symbol(site.symbol),
            };
            let point = UProbeAttachPoint { location, cookie: Some(site.cookie) };
            match program.attach(point, &site.path, UProbeScope::OneProcess(pid)) {
                Ok(link) => {
                    self.alloc_links.push((name, link));
                    attached.push(site.clone());
                }
                Err(e) => warn!(
                    "cannot probe `{}` in `{}` (pid {}): {e}; its allocations are not sampled",
                    site.symbol,
                    site.path.display(),
                    site.pid
                ),
            }
        }
        Ok(attached)
    }

    /// Aggregated allocation samples.
    pub fn alloc_counts(&self) -> Result<Vec<(SampleKey, AllocValue)>> {
        let map: HashMap<&MapData, SampleKey, AllocValue> = HashMap::try_from(self.map(MAP_ALLOC_COUNTS)?)?;
        collect_entries(map.iter()).context("failed to read the allocation map")
    }

    /// Starts counting, for `duration` (the kernel stops at the end by
    /// itself). Call once every event source is attached.
    pub fn open_window(&mut self, duration: Duration) -> Result<CaptureWindow> {
        let window = CaptureWindow::starting_now(duration);
        self.write_window(window.kernel())?;
        self.window = Some(window);
        Ok(window)
    }

    /// Stops counting now, unless the window already ended, and returns it
    /// as it was counted. `None` if no window was opened.
    pub fn close_window(&mut self) -> Result<Option<CaptureWindow>> {
        let Some(window) = self.window else { return Ok(None) };
        let closed = window.closed_at(monotonic_ns());
        if closed != window {
            self.write_window(closed.kernel())?;
            self.window = Some(closed);
        }
        Ok(Some(closed))
    }

    /// The window of the capture, as opened or closed last.
    pub fn window(&self) -> Option<CaptureWindow> {
        self.window
    }

    fn write_window(&mut self, window: Window) -> Result<()> {
        let mut map: Array<&mut MapData, Window> = Array::try_from(self.map_mut(MAP_WINDOW)?)?;
        map.set(0, window, 0).context("failed to set the capture window")
    }

    /// Stops all sampling; the maps keep what was collected.
    pub fn detach(&mut self) -> Result<()> {
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
    pub fn detach_in_background(&mut self) -> Result<Detaching> {
        let started = Instant::now();
        if let Some(link) = self.offcpu_link.take() {
            let program: &mut BtfTracePoint = typed_program(&mut self.ebpf, PROG_SCHED_SWITCH)?;
            program.detach(link).context("failed to detach the sched_switch program")?;
        }
        let links = std::mem::take(&mut self.links);
        if !links.is_empty() {
            let program = self.program_mut()?;
            for link in links {
                program.detach(link).context("failed to detach a perf event")?;
            }
        }
        let fault_links = std::mem::take(&mut self.fault_links);
        if !fault_links.is_empty() {
            let program: &mut PerfEvent = typed_program(&mut self.ebpf, PROG_FAULT_SAMPLE)?;
            for link in fault_links {
                program.detach(link).context("failed to detach a page-fault event")?;
            }
        }
        if self.alloc_links.is_empty() {
            return Ok(Detaching { thread: None });
        }
        debug!(elapsed_ms = started.elapsed().as_millis() as u64, "events detached");
        let mut probes = Vec::with_capacity(self.alloc_links.len());
        for (name, id) in std::mem::take(&mut self.alloc_links) {
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

    /// What was loaded.
    pub fn programs(&self) -> Programs {
        self.programs
    }

    pub fn is_attached(&self) -> bool {
        !self.links.is_empty()
            || !self.fault_links.is_empty()
            || self.offcpu_link.is_some()
            || !self.alloc_links.is_empty()
    }

    /// Aggregated off-CPU intervals: (key, switches, nanoseconds).
    pub fn offcpu_counts(&self) -> Result<Vec<(SampleKey, OffCpuValue)>> {
        let map: HashMap<&MapData, SampleKey, OffCpuValue> = HashMap::try_from(self.map(MAP_OFFCPU_COUNTS)?)?;
        collect_entries(map.iter()).context("failed to read the off-CPU map")
    }

    /// Threads of the target still switched out: where and since when
    /// (`CLOCK_MONOTONIC` ns).
    pub fn offcpu_in_flight(&self) -> Result<Vec<OffCpuStart>> {
        let map: HashMap<&MapData, u64, OffCpuStart> = HashMap::try_from(self.map(MAP_OFFCPU_START)?)?;
        Ok(collect_entries(map.iter())
            .context("failed to read the off-CPU start map")?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Aggregated page-fault samples.
    pub fn fault_counts(&self) -> Result<Vec<(SampleKey, u64)>> {
        let map: HashMap<&MapData, SampleKey, u64> = HashMap::try_from(self.map(MAP_FAULT_COUNTS)?)?;
        collect_entries(map.iter()).context("failed to read the page-fault map")
    }

    /// Forwards pending eBPF log records to the `log` facade.
    pub fn flush_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    /// Fd of the log ring buffer, to wait on it for records.
    pub fn log_fd(&self) -> Option<std::os::fd::RawFd> {
        self.logger.as_ref().map(|l| l.as_raw_fd())
    }

    /// Counters summed over CPUs.
    pub fn stats(&self) -> Result<Stats> {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(self.map(MAP_STATS)?)?;
        let mut stats = Stats::default();
        for stat in Stat::ALL {
            let values = map.get(&(stat as u32), 0).with_context(|| format!("failed to read counter {stat:?}"))?;
            stats.0[stat as usize] = values.iter().sum();
        }
        Ok(stats)
    }

    /// All aggregated samples: (key, count).
    pub fn counts(&self) -> Result<Vec<(SampleKey, u64)>> {
        let map: HashMap<&MapData, SampleKey, u64> = HashMap::try_from(self.map(MAP_COUNTS)?)?;
        collect_entries(map.iter()).context("failed to read the sample map")
    }

    /// Distinct processes in the sample map so far (for the status line).
    pub fn processes_seen(&self) -> Result<usize> {
        Ok(self.pids_seen()?.len())
    }

    /// The processes in the sample map so far, for the symbolizer to
    /// snapshot while they still exist (`Symbolizer::observe_pids`).
    pub fn pids_seen(&self) -> Result<Vec<u32>> {
        let map: HashMap<&MapData, SampleKey, u64> = HashMap::try_from(self.map(MAP_COUNTS)?)?;
        let pids: HashSet<u32> = map.keys().filter_map(Result::ok).map(|k| k.pid).collect();
        Ok(pids.into_iter().collect())
    }

    /// Looks up one stored stack.
    pub fn stack(&self, id: u64) -> Result<Option<StackRecord>> {
        let map: HashMap<&MapData, u64, StackRecord> = HashMap::try_from(self.map(MAP_STACKS)?)?;
        match map.get(&id, 0) {
            Ok(rec) => Ok(Some(rec)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("failed to read the stack map"),
        }
    }

    /// Empties the sample and stack maps and zeroes the counters, so the
    /// next capture starts clean.
    pub fn clear(&mut self) -> Result<()> {
        self.write_window(Window::CLOSED)?;
        self.window = None;
        self.clear_map::<SampleKey, u64>(MAP_COUNTS)?;
        self.clear_map::<u64, StackRecord>(MAP_STACKS)?;
        self.clear_map::<SampleKey, OffCpuValue>(MAP_OFFCPU_COUNTS)?;
        self.clear_map::<u64, OffCpuStart>(MAP_OFFCPU_START)?;
        self.clear_map::<SampleKey, u64>(MAP_FAULT_COUNTS)?;
        self.clear_map::<SampleKey, AllocValue>(MAP_ALLOC_COUNTS)?;
        let mut map: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(self.map_mut(MAP_STATS)?)?;
        let ncpus = aya::util::nr_cpus().map_err(|(path, e)| anyhow!("failed to read `{path}`: {e}"))?;
        for stat in Stat::ALL {
            let zeros = aya::maps::PerCpuValues::try_from(vec![0u64; ncpus]).context("per-CPU values")?;
            map.set(stat as u32, zeros, 0).context("failed to reset counters")?;
        }
        Ok(())
    }

    fn clear_map<K: aya::Pod, V: aya::Pod>(&mut self, name: &str) -> Result<()> {
        let mut map: HashMap<&mut MapData, K, V> = HashMap::try_from(self.map_mut(name)?)?;
        let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
        for k in keys {
            // Already gone is fine: the program may delete entries too.
            let _ = map.remove(&k);
        }
        Ok(())
    }

    fn program_mut(&mut self) -> Result<&mut PerfEvent> {
        typed_program(&mut self.ebpf, PROG_CPU_SAMPLE)
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).ok_or_else(|| anyhow!("map `{name}` missing from the eBPF object"))
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).ok_or_else(|| anyhow!("map `{name}` missing from the eBPF object"))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Links would also go with `Ebpf`, but detach explicitly so nothing
        // samples while the maps are torn down.
        let _ = self.detach();
    }
}

/// Allocation probes being detached; see [`Loader::detach_in_background`].
#[must_use = "wait until the probes are detached"]
pub struct Detaching {
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Detaching {
    /// Waits until every probe is detached.
    pub fn wait(mut self) -> Result<()> {
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

/// The program `name` of `ebpf`, as its concrete type.
fn typed_program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or_else(|| anyhow!("program `{name}` missing from the eBPF object"))?;
    <&mut T>::try_from(program).with_context(|| format!("program `{name}` has an unexpected type"))
}

/// Collects map entries, skipping ones deleted between `get_next_key` and
/// the lookup.
fn collect_entries<K, V>(
    iter: impl Iterator<Item = Result<(K, V), aya::maps::MapError>>,
) -> Result<Vec<(K, V)>, aya::maps::MapError> {
    let mut out = Vec::new();
    for entry in iter {
        match entry {
            Ok(kv) => out.push(kv),
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One sentence for `what` failing: with the privilege hint (and without
/// aya's nested repetition of the same cause) when it was EPERM/EACCES.
fn privilege_aware(err: anyhow::Error, what: &str) -> anyhow::Error {
    let text = format!("{err:#}");
    // EPERM is a missing privilege. (EACCES from a program load is the
    // verifier rejecting it, which is a bug or an unsupported kernel: keep
    // its log.)
    let denied = text.contains("Operation not permitted");
    if denied {
        anyhow!("{what}: permission denied; {PRIVILEGE_HINT}")
    } else {
        anyhow!("{what}: {text}")
    }
}
