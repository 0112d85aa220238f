//! Owns the eBPF object: loads the embedded program with the target filter,
//! attaches it to a CPU-clock perf event on every online CPU, and gives typed
//! access to its maps.
//!
//! Loading is separate from attaching so a daemon can load (and so verify the
//! program against this kernel) once at start and sample only while capturing.

use std::{collections::HashSet, os::fd::AsRawFd as _};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{HashMap, MapData, PerCpuArray},
    programs::{
        perf_event::{PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent},
        PerfEvent,
    },
    Ebpf, EbpfLoader,
};
use profiler_common::{
    Config, FilterMode, SampleKey, StackRecord, Stat, MAP_COUNTS, MAP_STACKS, MAP_STATS, MAP_TARGET_PIDS,
    PROG_CPU_SAMPLE, TARGET_PIDS_MAP_ENTRIES,
};
use tracing::{debug, warn};

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

/// The loaded program, its maps and (while sampling) its perf-event links.
pub struct Loader {
    ebpf: Ebpf,
    links: Vec<PerfEventLinkId>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl Loader {
    /// Loads and verifies the program with `filter` compiled into its config.
    pub fn load(filter: &Filter) -> Result<Self> {
        raise_memlock_limit();
        let config = match filter {
            Filter::All => Config::all(),
            Filter::Pids(_) => Config { filter_mode: FilterMode::Pids as u32, cgroup_level: 0, cgroup_id: 0 },
            Filter::Cgroup { id, level } => {
                Config { filter_mode: FilterMode::Cgroup as u32, cgroup_level: *level, cgroup_id: *id }
            }
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(profiler_common::GLOBAL_CONFIG, &config, true)
            .load(EBPF_OBJECT)
            .map_err(|e| privilege_aware(anyhow!(e), "failed to load the eBPF object"))?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                warn!("eBPF program logs are unavailable: {e}");
                None
            }
        };
        let program: &mut PerfEvent = ebpf
            .program_mut(PROG_CPU_SAMPLE)
            .ok_or_else(|| anyhow!("program `{PROG_CPU_SAMPLE}` missing from the eBPF object"))?
            .try_into()
            .context("program `cpu_sample` is not a perf_event program")?;
        program.load().map_err(|e| privilege_aware(anyhow!(e), "the kernel rejected the perf_event program"))?;
        let mut loader = Self { ebpf, links: Vec::new(), logger };
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

    /// `STACKS` is not preallocated: the kernel serves its elements from
    /// small per-CPU caches that are refilled asynchronously, so a burst of
    /// new stacks right after attaching can find a cache empty (ENOMEM, a
    /// lost stack). Inserting and deleting a few elements from each CPU
    /// leaves freed elements in every CPU's cache before the first sample.
    fn prime_stack_allocator(&mut self, cpus: &[u32]) {
        const PER_CPU: u64 = 16;
        let Ok(map) = self.map_mut(MAP_STACKS) else { return };
        let Ok(mut map) = HashMap::<&mut MapData, u64, StackRecord>::try_from(map) else { return };
        // SAFETY: sched_getaffinity/sched_setaffinity on the calling thread
        // with a properly sized, zero-initialised cpu_set_t.
        let mut original: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if unsafe { libc::sched_getaffinity(0, size, &mut original) } != 0 {
            return;
        }
        let record = StackRecord { len: 0, ips: [0; profiler_common::MAX_STACK_DEPTH] };
        for &cpu in cpus {
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu as usize, &mut set) };
            if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
                continue;
            }
            // Keys the program never produces (hashes are remapped away
            // from 0 and u64::MAX, but these are just improbable values).
            let keys: Vec<u64> = (0..PER_CPU).map(|i| 0x5354_4143_4b00_0000 | (u64::from(cpu) << 8) | i).collect();
            for k in &keys {
                let _ = map.insert(k, record, 0);
            }
            for k in &keys {
                let _ = map.remove(k);
            }
        }
        unsafe { libc::sched_setaffinity(0, size, &original) };
    }

    /// Stops sampling; the maps keep what was collected.
    pub fn detach(&mut self) -> Result<()> {
        let links = std::mem::take(&mut self.links);
        let program = self.program_mut()?;
        for link in links {
            program.detach(link).context("failed to detach a perf event")?;
        }
        Ok(())
    }

    pub fn is_attached(&self) -> bool {
        !self.links.is_empty()
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
        let mut out = Vec::new();
        for entry in map.iter() {
            match entry {
                Ok(kv) => out.push(kv),
                // An entry deleted between get_next_key and lookup: skip it.
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e).context("failed to read the sample map"),
            }
        }
        Ok(out)
    }

    /// Distinct processes in the sample map so far (for the status line).
    pub fn processes_seen(&self) -> Result<usize> {
        let map: HashMap<&MapData, SampleKey, u64> = HashMap::try_from(self.map(MAP_COUNTS)?)?;
        let pids: HashSet<u32> = map.keys().filter_map(Result::ok).map(|k| k.pid).collect();
        Ok(pids.len())
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
        {
            let mut map: HashMap<&mut MapData, SampleKey, u64> = HashMap::try_from(self.map_mut(MAP_COUNTS)?)?;
            let keys: Vec<SampleKey> = map.keys().filter_map(Result::ok).collect();
            for k in keys {
                let _ = map.remove(&k);
            }
        }
        {
            let mut map: HashMap<&mut MapData, u64, StackRecord> = HashMap::try_from(self.map_mut(MAP_STACKS)?)?;
            let keys: Vec<u64> = map.keys().filter_map(Result::ok).collect();
            for k in keys {
                let _ = map.remove(&k);
            }
        }
        let mut map: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(self.map_mut(MAP_STATS)?)?;
        let ncpus = aya::util::nr_cpus().map_err(|(path, e)| anyhow!("failed to read `{path}`: {e}"))?;
        for stat in Stat::ALL {
            let zeros = aya::maps::PerCpuValues::try_from(vec![0u64; ncpus]).context("per-CPU values")?;
            map.set(stat as u32, zeros, 0).context("failed to reset counters")?;
        }
        Ok(())
    }

    fn program_mut(&mut self) -> Result<&mut PerfEvent> {
        self.ebpf
            .program_mut(PROG_CPU_SAMPLE)
            .ok_or_else(|| anyhow!("program `{PROG_CPU_SAMPLE}` missing"))?
            .try_into()
            .context("program `cpu_sample` is not a perf_event program")
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

/// Adds the privilege hint when the error chain says EPERM/EACCES.
fn privilege_aware(err: anyhow::Error, what: &str) -> anyhow::Error {
    let text = format!("{err:#}");
    let denied =
        text.contains("Operation not permitted") || text.contains("Permission denied") || text.contains("EPERM");
    if denied {
        anyhow!("{what}: {text}; {PRIVILEGE_HINT}")
    } else {
        anyhow!("{what}: {text}")
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; raise it so such
/// hosts do not fail with a confusing EPERM. Harmless elsewhere.
fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer to a local.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        debug!("failed to raise RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
    }
}
