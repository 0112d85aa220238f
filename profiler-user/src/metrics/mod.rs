//! The sampler behind `watch`'s triggers: the CPU time, CPU capacity,
//! resident memory and memory limit of a target, read from procfs and the
//! cgroup v2 hierarchy.
//!
//! A [`MetricSampler`] is created once per `watch` and asked for a
//! [`Sample`] every `--sample-interval`; the decision about what the numbers
//! mean lives in [`crate::monitor`], so this module only does I/O (and the
//! bookkeeping that turns per-process counters into one target counter). A
//! sample never fails: what cannot be read is logged at debug level and
//! leaves the target absent or the value at its fallback, and the monitor
//! copes with gaps.
//!
//! What each target reads:
//!
//! | target | CPU time | memory | limits |
//! | --- | --- | --- | --- |
//! | `--pid`, `--name` | `/proc/<pid>/stat` per process | `VmRSS` per process | each process's cgroup (`/proc/<pid>/cgroup`) |
//! | `--cgroup` | `cpu.stat` `usage_usec` | `memory.current` | the cgroup and its ancestors |
//! | host | `/proc/stat` | `MemTotal - MemAvailable` | online CPUs, `MemTotal` |
//!
//! A cgroup whose `memory.current` or `cpu.stat` is missing (a hybrid host
//! where the controller is still on cgroup v1) falls back to the processes in
//! it. Limits are the smallest `cpu.max` / `memory.max` of the cgroup and its
//! ancestors, else the online CPUs and `MemTotal`, as the contract defines
//! the percentages.

mod procfs;
mod tracker;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use procfs::{
    parse_cgroup_v2_path, parse_cpu_list, parse_cpu_max, parse_memory_max, parse_meminfo, parse_proc_stat,
    parse_vm_rss, MemInfo, ProcStat,
};
use tracker::{NameMatcher, PidTracker};

use crate::target::{cgroup_dir, TargetSpec};

/// One reading of a target's metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When it was taken: intervals are measured on this clock.
    pub at: Instant,
    /// The same moment on the wall clock, for the window a firing reports.
    pub wall: SystemTime,
    /// Whether the target exists now: at least one of its processes runs, or
    /// its cgroup directory exists. When false the other values are zero.
    pub present: bool,
    /// CPU seconds the target used, cumulative. Only differences between
    /// samples of the same `epoch` mean anything.
    pub cpu_seconds: f64,
    /// Changes when `cpu_seconds` restarted from an unrelated origin (the
    /// cgroup was removed and created again), so no interval spans it.
    pub epoch: u64,
    /// CPUs available to the target: its cgroup quota if set, else the
    /// online CPUs. What 100 % CPU means.
    pub cpu_capacity: f64,
    /// Resident memory of the target's processes, or its cgroup's usage.
    pub mem_bytes: u64,
    /// What 100 % memory means: the cgroup's `memory.max`, else `MemTotal`.
    pub mem_limit: u64,
    /// The target's processes (for `--pid` and `--name`; empty otherwise),
    /// in ascending order.
    pub pids: Vec<u32>,
}

impl Sample {
    /// A sample of a target that does not exist (yet, or any more).
    pub fn absent(at: Instant, wall: SystemTime) -> Self {
        Self {
            at,
            wall,
            present: false,
            cpu_seconds: 0.0,
            epoch: 0,
            cpu_capacity: 0.0,
            mem_bytes: 0,
            mem_limit: 0,
            pids: Vec::new(),
        }
    }
}

/// How long cgroup limits and a process's cgroup are trusted before being
/// read again: they change rarely (`systemctl set-property`), and reading
/// them at every sample would multiply the sampler's cost by the depth of
/// the hierarchy.
const LIMIT_TTL: Duration = Duration::from_secs(10);

/// Reads a target's metrics; see the module documentation.
#[derive(Debug)]
pub struct MetricSampler {
    source: Source,
    tracker: PidTracker,
    limits: LimitCache,
    /// Cgroup directory of each tracked process, by pid and start time.
    proc_cgroups: HashMap<u32, (u64, Option<PathBuf>, Instant)>,
}

#[derive(Debug)]
enum Source {
    /// `--pid`: these processes, identified by pid and start time so a
    /// recycled pid is not mistaken for the target. `None` if the process
    /// was already gone when `watch` started.
    Pids(Vec<(u32, Option<u64>)>),
    Name(NameMatcher),
    Cgroup(CgroupSource),
    Host,
}

#[derive(Debug)]
struct CgroupSource {
    spec: PathBuf,
    /// The resolved directory and its inode, which tells a cgroup that was
    /// removed and created again from the one seen before.
    dir: Option<(PathBuf, u64)>,
    epoch: u64,
}

impl MetricSampler {
    /// A sampler for `target`. Never fails: a target that does not exist yet
    /// (a `--name` not started, a cgroup not created) is sampled as absent
    /// until it appears.
    pub fn new(target: &TargetSpec) -> Self {
        let source = match target {
            TargetSpec::Pids(pids) => {
                Source::Pids(pids.iter().map(|&pid| (pid, read_proc_stat(pid).map(|s| s.start_ticks))).collect())
            }
            TargetSpec::Name(re) => Source::Name(NameMatcher::new(re.clone())),
            TargetSpec::Cgroup(path) => Source::Cgroup(CgroupSource { spec: path.clone(), dir: None, epoch: 0 }),
            TargetSpec::Host => Source::Host,
        };
        Self { source, tracker: PidTracker::default(), limits: LimitCache::default(), proc_cgroups: HashMap::new() }
    }

    /// Reads the target's metrics now. `now` is the caller's clock reading
    /// for this sample (the monitor measures intervals with it).
    pub fn sample(&mut self, now: Instant) -> Sample {
        let wall = SystemTime::now();
        let host = HostInfo::read();
        let sample = match &mut self.source {
            Source::Host => sample_host(now, wall, &host),
            Source::Pids(_) | Source::Name(_) => {
                let boot_ticks = boot_time_ticks();
                let stats = match &mut self.source {
                    Source::Pids(ids) => pid_stats(ids),
                    Source::Name(matcher) => name_stats(matcher, &self.tracker, now),
                    _ => Vec::new(),
                };
                self.sample_processes(now, wall, &host, boot_ticks, &stats)
            }
            Source::Cgroup(_) => self.sample_cgroup(now, wall, &host),
        };
        tracing::trace!(?sample, "sampled");
        sample
    }

    /// `--pid` and `--name`: sums over the processes, limits from their cgroups.
    fn sample_processes(
        &mut self,
        now: Instant,
        wall: SystemTime,
        host: &HostInfo,
        boot_ticks: Option<u64>,
        stats: &[(u32, ProcStat)],
    ) -> Sample {
        let ticks = self.tracker.update(boot_ticks, stats);
        if stats.is_empty() {
            return Sample::absent(now, wall);
        }
        let pids: Vec<u32> = stats.iter().map(|(pid, _)| *pid).collect();
        self.proc_cgroups.retain(|pid, _| pids.contains(pid));
        let mut cgroups: Vec<PathBuf> = Vec::new();
        let mut unknown_cgroup = false;
        for (pid, stat) in stats {
            match self.process_cgroup(*pid, stat.start_ticks, now) {
                Some(dir) if !cgroups.contains(&dir) => cgroups.push(dir),
                Some(_) => {}
                None => unknown_cgroup = true,
            }
        }
        // Processes in different cgroups can use the sum of their limits;
        // one without a limit can use the whole machine.
        let mut cpu_quota = Some(0.0);
        let mut mem_quota = Some(0u64);
        for dir in &cgroups {
            let limits = self.limits.get(dir, now);
            cpu_quota = cpu_quota.zip(limits.cpus).map(|(a, b)| a + b);
            mem_quota = mem_quota.zip(limits.mem_bytes).map(|(a, b)| a.saturating_add(b));
        }
        if unknown_cgroup || cgroups.is_empty() {
            (cpu_quota, mem_quota) = (None, None);
        }
        Sample {
            at: now,
            wall,
            present: true,
            cpu_seconds: ticks as f64 / clock_ticks_per_second(),
            epoch: 0,
            cpu_capacity: host.capacity(cpu_quota),
            mem_bytes: pids.iter().filter_map(|&pid| read_vm_rss(pid)).sum(),
            mem_limit: host.mem_limit(mem_quota),
            pids,
        }
    }

    /// The cgroup v2 directory of a process, cached per process instance.
    fn process_cgroup(&mut self, pid: u32, start_ticks: u64, now: Instant) -> Option<PathBuf> {
        if let Some((start, dir, checked)) = self.proc_cgroups.get(&pid) {
            if *start == start_ticks && now.saturating_duration_since(*checked) < LIMIT_TTL {
                return dir.clone();
            }
        }
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok();
        let dir = text.as_deref().and_then(parse_cgroup_v2_path).and_then(|path| cgroup_dir(Path::new(path)).ok());
        self.proc_cgroups.insert(pid, (start_ticks, dir.clone(), now));
        dir
    }

    /// `--cgroup`: the cgroup's own counters, or its processes' where a
    /// controller's files are missing.
    fn sample_cgroup(&mut self, now: Instant, wall: SystemTime, host: &HostInfo) -> Sample {
        let Source::Cgroup(source) = &mut self.source else {
            return Sample::absent(now, wall);
        };
        let Some(dir) = source.current_dir() else {
            return Sample::absent(now, wall);
        };
        let epoch = source.epoch;
        let mut pids = Vec::new();
        let cpu_seconds = match crate::cputime::cgroup_cpu_seconds(&dir) {
            Some(seconds) => seconds,
            None => {
                let boot_ticks = boot_time_ticks();
                pids = cgroup_pids(&dir);
                let stats: Vec<_> = pids.iter().filter_map(|&pid| Some((pid, read_proc_stat(pid)?))).collect();
                self.tracker.update(boot_ticks, &stats) as f64 / clock_ticks_per_second()
            }
        };
        let mem_bytes = match read_u64(&dir.join("memory.current")) {
            Some(bytes) => bytes,
            None => {
                if pids.is_empty() {
                    pids = cgroup_pids(&dir);
                }
                pids.iter().filter_map(|&pid| read_vm_rss(pid)).sum()
            }
        };
        let limits = self.limits.get(&dir, now);
        Sample {
            at: now,
            wall,
            present: true,
            cpu_seconds,
            epoch,
            cpu_capacity: host.capacity(limits.cpus),
            mem_bytes,
            mem_limit: host.mem_limit(limits.mem_bytes),
            pids: Vec::new(),
        }
    }
}

impl CgroupSource {
    /// The cgroup's directory if it exists now, resolving the path again
    /// after it disappeared (a systemd unit restarted, a container
    /// recreated). A new directory starts a new counter epoch.
    fn current_dir(&mut self) -> Option<PathBuf> {
        if let Some((dir, ino)) = &self.dir {
            match fs::metadata(dir) {
                Ok(meta) if meta.ino() == *ino => return Some(dir.clone()),
                _ => self.dir = None,
            }
        }
        let dir = cgroup_dir(&self.spec).ok()?;
        let ino = fs::metadata(&dir).ok()?.ino();
        self.epoch += 1;
        self.dir = Some((dir.clone(), ino));
        Some(dir)
    }
}

/// The host: `/proc/stat` and `/proc/meminfo`.
fn sample_host(now: Instant, wall: SystemTime, host: &HostInfo) -> Sample {
    let Some(cpu_seconds) = crate::cputime::host_cpu_seconds() else {
        tracing::debug!("cannot read the host's CPU time from `/proc/stat`");
        return Sample::absent(now, wall);
    };
    Sample {
        at: now,
        wall,
        present: true,
        cpu_seconds,
        epoch: 0,
        cpu_capacity: host.capacity(None),
        mem_bytes: host.meminfo.map_or(0, |m| m.total.saturating_sub(m.available)),
        mem_limit: host.mem_limit(None),
        pids: Vec::new(),
    }
}

/// `--pid`: the given processes that still are the ones first seen.
fn pid_stats(ids: &[(u32, Option<u64>)]) -> Vec<(u32, ProcStat)> {
    ids.iter()
        .filter_map(|&(pid, start)| {
            let stat = read_proc_stat(pid)?;
            (Some(stat.start_ticks) == start && stat.state != 'Z').then_some((pid, stat))
        })
        .collect()
}

/// `--name`: the matching processes, with a recycled pid checked again
/// instead of trusting the cached verdict for its previous owner.
fn name_stats(matcher: &mut NameMatcher, tracker: &PidTracker, now: Instant) -> Vec<(u32, ProcStat)> {
    matcher
        .scan(now)
        .into_iter()
        .filter_map(|pid| {
            let stat = read_proc_stat(pid)?;
            if tracker.start_ticks(pid).is_some_and(|start| start != stat.start_ticks) && !matcher.recheck(pid, now) {
                return None;
            }
            (stat.state != 'Z').then_some((pid, stat))
        })
        .collect()
}

/// Every process in a cgroup and its descendants. Bounded, since a
/// hierarchy is not guaranteed to be small or stable while we walk it.
fn cgroup_pids(dir: &Path) -> Vec<u32> {
    const MAX_CGROUPS: usize = 4096;
    let mut pids = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(dir) = pending.pop() {
        visited += 1;
        if visited > MAX_CGROUPS {
            tracing::debug!("stopped listing the processes of `{}` after {MAX_CGROUPS} cgroups", dir.display());
            break;
        }
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            pending.extend(entries.filter_map(|e| e.ok()).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Host-wide values every target needs for its percentages.
struct HostInfo {
    online_cpus: f64,
    meminfo: Option<MemInfo>,
}

impl HostInfo {
    fn read() -> Self {
        let online = fs::read_to_string("/sys/devices/system/cpu/online").ok().and_then(|t| parse_cpu_list(&t));
        let online_cpus = match online {
            Some(n) => f64::from(n),
            None => {
                // SAFETY: sysconf has no memory-safety preconditions.
                let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
                if n > 0 { n as f64 } else { 1.0 }
            }
        };
        let meminfo = fs::read_to_string("/proc/meminfo").ok().and_then(|t| parse_meminfo(&t));
        if meminfo.is_none() {
            tracing::debug!("cannot read `/proc/meminfo`; memory percentages need a cgroup limit");
        }
        Self { online_cpus, meminfo }
    }

    /// A quota never counts for more CPUs than are online.
    fn capacity(&self, quota: Option<f64>) -> f64 {
        quota.map_or(self.online_cpus, |q| q.min(self.online_cpus))
    }

    /// A limit above the machine's memory means no limit.
    fn mem_limit(&self, limit: Option<u64>) -> u64 {
        match (limit, self.meminfo) {
            (Some(limit), Some(m)) => limit.min(m.total),
            (Some(limit), None) => limit,
            (None, Some(m)) => m.total,
            (None, None) => 0,
        }
    }
}

/// Effective limits of a cgroup directory.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Limits {
    /// CPUs the quota allows, if any cgroup on the path sets one.
    cpus: Option<f64>,
    mem_bytes: Option<u64>,
}

#[derive(Debug, Default)]
struct LimitCache {
    entries: HashMap<PathBuf, (Limits, Instant)>,
}

impl LimitCache {
    fn get(&mut self, dir: &Path, now: Instant) -> Limits {
        if let Some((limits, read)) = self.entries.get(dir) {
            if now.saturating_duration_since(*read) < LIMIT_TTL {
                return *limits;
            }
        }
        // Stale entries of processes long gone would otherwise accumulate.
        self.entries.retain(|_, (_, read)| now.saturating_duration_since(*read) < LIMIT_TTL);
        let limits = effective_limits(dir);
        self.entries.insert(dir.to_path_buf(), (limits, now));
        limits
    }
}

/// The tightest `cpu.max` and `memory.max` of `dir` and its ancestors: a
/// parent's limit binds its children. The walk stops at the hierarchy's root
/// (the first directory without `cgroup.procs` above it).
fn effective_limits(dir: &Path) -> Limits {
    let mut limits = Limits::default();
    for level in dir.ancestors().take_while(|d| d.join("cgroup.procs").is_file()) {
        if let Some(cpus) = fs::read_to_string(level.join("cpu.max")).ok().and_then(|t| parse_cpu_max(&t)) {
            limits.cpus = Some(limits.cpus.map_or(cpus, |c: f64| c.min(cpus)));
        }
        if let Some(bytes) = fs::read_to_string(level.join("memory.max")).ok().and_then(|t| parse_memory_max(&t)) {
            limits.mem_bytes = Some(limits.mem_bytes.map_or(bytes, |b| b.min(bytes)));
        }
    }
    limits
}

fn read_proc_stat(pid: u32) -> Option<ProcStat> {
    parse_proc_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Resident memory of a process in bytes; kernel threads have none.
fn read_vm_rss(pid: u32) -> Option<u64> {
    parse_vm_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` times.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Time since boot in clock ticks, the clock of a process's start time
/// (field 22 of `/proc/<pid>/stat`), to tell processes started since the
/// last sample from ones that only now match.
fn boot_time_ticks() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let ticks = clock_ticks_per_second() as u64;
    Some(u64::try_from(ts.tv_sec).ok()? * ticks + u64::try_from(ts.tv_nsec).ok()? * ticks / 1_000_000_000)
}

#[cfg(test)]
mod tests;
