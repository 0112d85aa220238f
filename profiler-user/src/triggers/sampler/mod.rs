//! The sampler behind `watch`'s triggers: the CPU time, CPU capacity,
//! resident memory and memory limit of a target, read from procfs and the
//! cgroup v2 hierarchy.
//!
//! A [`MetricSampler`] is created once per `watch` and asked for a
//! [`Sample`] every `--sample-interval`; the decision about what the numbers
//! mean lives in [`crate::triggers`], so this module only does I/O (and the
//! bookkeeping that turns per-process counters into one target counter). A
//! sample never fails: what cannot be read is logged at debug level and
//! leaves the target absent or the value at its fallback, and the monitor
//! copes with gaps.
//!
//! What each target reads:
//!
//! - `--pid`, `--name`: `/proc/<pid>/stat` (CPU time, start time) and
//!   `VmRSS` of each process; limits from each process's cgroups
//!   (`/proc/<pid>/cgroup`).
//! - `--cgroup`: `cpu.stat` (`usage_usec`) and `memory.current`, or the
//!   processes in it where a controller's file is missing (a hybrid host
//!   whose controllers are still on cgroup v1); limits from it and its
//!   ancestors.
//! - the host: `/proc/stat` and `MemTotal - MemAvailable`.
//!
//! 100 % is what the contract says: the tightest CPU quota and memory limit
//! of the target's cgroups (see [`limits`]), else the online CPUs and
//! `MemTotal`.

mod limits;
mod names;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use limits::{CgroupDirs, HostInfo, LimitCache, Limits, V1Mounts, LIMIT_TTL};
use names::NameMatcher;

use crate::ids::Pid;
use crate::procfs::cgroup;
use crate::procfs::cputime::{cgroup_cpu_seconds, host_cpu_seconds, PidTracker};
use crate::procfs::stat::{self, ProcStat};
use crate::procfs::status::read_vm_rss;
use crate::sys::{boot_time_ticks, ticks_per_second};
use crate::target::{cgroup_dir, TargetSpec};

/// One reading of a target's metrics.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
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
    /// Threads of the target's processes (for `--pid` and `--name`; `None`
    /// otherwise): a target cannot use more cores than it has threads.
    pub threads: Option<u64>,
    /// Resident memory of the target's processes, or its cgroup's usage.
    pub mem_bytes: u64,
    /// What 100 % memory means: the cgroup's `memory.max`, else `MemTotal`.
    pub mem_limit: u64,
    /// The target's processes (for `--pid` and `--name`; empty otherwise),
    /// in ascending order.
    pub pids: Vec<Pid>,
}

impl Sample {
    /// A sample of a target that does not exist (yet, or any more).
    pub(crate) fn absent(at: Instant, wall: SystemTime) -> Self {
        Self {
            at,
            wall,
            present: false,
            cpu_seconds: 0.0,
            epoch: 0,
            cpu_capacity: 0.0,
            threads: None,
            mem_bytes: 0,
            mem_limit: 0,
            pids: Vec::new(),
        }
    }
}

/// Reads a target's metrics; see the module documentation.
#[derive(Debug)]
pub(crate) struct MetricSampler {
    source: Source,
    tracker: PidTracker,
    limits: LimitCache,
    v1_mounts: V1Mounts,
    /// Cgroups of each tracked process, by pid and start time.
    proc_cgroups: HashMap<Pid, (u64, CgroupDirs, Instant)>,
}

#[derive(Debug)]
enum Source {
    /// `--pid`: these processes, identified by pid and start time so a
    /// recycled pid is not mistaken for the target. `None` if the process
    /// was already gone when `watch` started.
    Pids(Vec<(Pid, Option<u64>)>),
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
    pub(crate) fn new(target: &TargetSpec) -> Self {
        let source = match target {
            TargetSpec::Pids(pids) => Source::Pids(pids.iter().map(|&pid| (pid, stat::start_time(pid))).collect()),
            TargetSpec::Name(re) => Source::Name(NameMatcher::new(re.clone())),
            TargetSpec::Cgroup(path) => Source::Cgroup(CgroupSource { spec: path.clone(), dir: None, epoch: 0 }),
            TargetSpec::Host => Source::Host,
        };
        // Only processes can be in a v1 hierarchy that matters: `--cgroup`
        // is a v2 directory.
        let v1_mounts = match target {
            TargetSpec::Pids(_) | TargetSpec::Name(_) => V1Mounts::read(),
            _ => V1Mounts::default(),
        };
        Self {
            source,
            tracker: PidTracker::default(),
            limits: LimitCache::default(),
            v1_mounts,
            proc_cgroups: HashMap::new(),
        }
    }

    /// Reads the target's metrics now. `now` is the caller's clock reading
    /// for this sample (the monitor measures intervals with it).
    pub(crate) fn sample(&mut self, now: Instant) -> Sample {
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
        stats: &[(Pid, ProcStat)],
    ) -> Sample {
        let ticks = self.tracker.update(boot_ticks, stats);
        if stats.is_empty() {
            return Sample::absent(now, wall);
        }
        let pids: Vec<Pid> = stats.iter().map(|(pid, _)| *pid).collect();
        self.proc_cgroups.retain(|pid, _| pids.contains(pid));
        let mut cgroups: Vec<CgroupDirs> = Vec::new();
        for (pid, stat) in stats {
            let dirs = self.process_cgroups(*pid, stat.start_ticks, now);
            if !cgroups.contains(&dirs) {
                cgroups.push(dirs);
            }
        }
        let limits = Limits::sum(cgroups.iter().map(|dirs| self.limits.get(dirs, now)));
        Sample {
            at: now,
            wall,
            present: true,
            cpu_seconds: ticks as f64 / ticks_per_second(),
            epoch: 0,
            cpu_capacity: host.capacity(limits.cpus),
            threads: Some(stats.iter().map(|(_, stat)| stat.threads).sum()),
            mem_bytes: pids.iter().filter_map(|&pid| read_vm_rss(pid)).sum(),
            mem_limit: host.mem_limit(limits.mem_bytes),
            pids,
        }
    }

    /// The cgroups of a process, cached per process instance.
    fn process_cgroups(&mut self, pid: Pid, start_ticks: u64, now: Instant) -> CgroupDirs {
        if let Some((start, dirs, checked)) = self.proc_cgroups.get(&pid) {
            if *start == start_ticks && now.saturating_duration_since(*checked) < LIMIT_TTL {
                return dirs.clone();
            }
        }
        let dirs = CgroupDirs::of_process(pid, &self.v1_mounts);
        self.proc_cgroups.insert(pid, (start_ticks, dirs.clone(), now));
        dirs
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
        let cpu_seconds = match cgroup_cpu_seconds(&dir) {
            Some(seconds) => seconds,
            None => {
                let boot_ticks = boot_time_ticks();
                pids = cgroup::tree_procs(&dir);
                let stats: Vec<_> = pids.iter().filter_map(|&pid| Some((pid, stat::read(pid)?))).collect();
                self.tracker.update(boot_ticks, &stats) as f64 / ticks_per_second()
            }
        };
        let mem_bytes = match cgroup::memory_current(&dir) {
            Some(bytes) => bytes,
            None => {
                if pids.is_empty() {
                    pids = cgroup::tree_procs(&dir);
                }
                pids.iter().filter_map(|&pid| read_vm_rss(pid)).sum()
            }
        };
        let limits = self.limits.get(&CgroupDirs { v2: Some(dir), ..CgroupDirs::default() }, now);
        Sample {
            at: now,
            wall,
            present: true,
            cpu_seconds,
            epoch,
            cpu_capacity: host.capacity(limits.cpus),
            threads: None,
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
    let Some(cpu_seconds) = host_cpu_seconds() else {
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
        threads: None,
        mem_bytes: host.meminfo.map_or(0, |m| m.total.saturating_sub(m.available)),
        mem_limit: host.mem_limit(None),
        pids: Vec::new(),
    }
}

/// `--pid`: the given processes that still are the ones first seen.
fn pid_stats(ids: &[(Pid, Option<u64>)]) -> Vec<(Pid, ProcStat)> {
    ids.iter()
        .filter_map(|&(pid, start)| {
            let stat = stat::read(pid)?;
            (Some(stat.start_ticks) == start && stat.state != 'Z').then_some((pid, stat))
        })
        .collect()
}

/// `--name`: the matching processes, with a recycled pid checked again
/// instead of trusting the cached verdict for its previous owner.
fn name_stats(matcher: &mut NameMatcher, tracker: &PidTracker, now: Instant) -> Vec<(Pid, ProcStat)> {
    matcher
        .scan(now)
        .into_iter()
        .filter_map(|pid| {
            let stat = stat::read(pid)?;
            if tracker.start_ticks(pid).is_some_and(|start| start != stat.start_ticks) && !matcher.recheck(pid, now) {
                return None;
            }
            (stat.state != 'Z').then_some((pid, stat))
        })
        .collect()
}

#[cfg(test)]
mod tests;
