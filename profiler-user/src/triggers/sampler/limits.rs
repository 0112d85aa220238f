//! What 100 % means: the CPUs and memory a target may use, from its cgroups'
//! limits or, without any, the host's online CPUs and `MemTotal`.
//!
//! Limits come from cgroup v2 (`cpu.max`, `memory.max`) and, for processes
//! on a v1 or hybrid host where the controllers are still mounted as v1
//! (Docker on CentOS 7, older Ubuntu), from `cpu.cfs_quota_us` and
//! `memory.limit_in_bytes` too: a container limited to 2 GiB is at 100 % at
//! 2 GiB whichever hierarchy set the limit.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ids::Pid;
use crate::procfs::cgroup::{
    self, parse_cfs_quota, parse_cgroup_v1_path, parse_cgroup_v2_path, parse_cpu_max, parse_memory_max,
    parse_v1_memory_limit,
};
use crate::procfs::host::{self, MemInfo};
use crate::procfs::mountinfo;
use crate::target::cgroup_dir;

/// How long cgroup limits and a process's cgroups are trusted before being
/// read again: they change rarely (`systemctl set-property`), and reading
/// them at every sample would multiply the sampler's cost by the depth of
/// the hierarchy.
pub(super) const LIMIT_TTL: Duration = Duration::from_secs(10);

/// Host-wide values every target needs for its percentages.
#[derive(Clone, Copy, Debug)]
pub(super) struct HostInfo {
    pub(super) online_cpus: f64,
    pub(super) meminfo: Option<MemInfo>,
}

impl HostInfo {
    pub(super) fn read() -> Self {
        let online_cpus = match host::online_cpus() {
            Some(n) => f64::from(n),
            None => {
                // SAFETY: sysconf has no memory-safety preconditions.
                let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
                (n as f64).max(1.0)
            }
        };
        let meminfo = host::meminfo();
        if meminfo.is_none() {
            tracing::debug!("cannot read `/proc/meminfo`; memory percentages need a cgroup limit");
        }
        Self { online_cpus, meminfo }
    }

    /// A quota never counts for more CPUs than are online.
    pub(super) fn capacity(&self, quota: Option<f64>) -> f64 {
        quota.map_or(self.online_cpus, |q| q.min(self.online_cpus))
    }

    /// A limit above the machine's memory means no limit.
    pub(super) fn mem_limit(&self, limit: Option<u64>) -> u64 {
        match (limit, self.meminfo) {
            (Some(limit), Some(m)) => limit.min(m.total),
            (Some(limit), None) => limit,
            (None, Some(m)) => m.total,
            (None, None) => 0,
        }
    }
}

/// Effective limits: `None` where no cgroup on the path sets one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Limits {
    /// CPUs the quota allows.
    pub(super) cpus: Option<f64>,
    pub(super) mem_bytes: Option<u64>,
}

impl Limits {
    fn tighter(self, other: Limits) -> Limits {
        Limits {
            cpus: min_of(self.cpus, other.cpus, f64::min),
            mem_bytes: min_of(self.mem_bytes, other.mem_bytes, u64::min),
        }
    }

    /// Limits of processes in different cgroups: they can use the sum, and
    /// one without a limit can use the whole machine.
    pub(super) fn sum(all: impl IntoIterator<Item = Limits>) -> Limits {
        let mut total = Limits { cpus: Some(0.0), mem_bytes: Some(0) };
        let mut any = false;
        for limits in all {
            any = true;
            total.cpus = total.cpus.zip(limits.cpus).map(|(a, b)| a + b);
            total.mem_bytes = total.mem_bytes.zip(limits.mem_bytes).map(|(a, b)| a.saturating_add(b));
        }
        if any {
            total
        } else {
            Limits::default()
        }
    }
}

fn min_of<T: Copy>(a: Option<T>, b: Option<T>, min: fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(min(a, b)),
        (a, b) => a.or(b),
    }
}

/// The cgroup directories whose limits bind a process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct CgroupDirs {
    pub(super) v2: Option<PathBuf>,
    pub(super) v1_memory: Option<PathBuf>,
    pub(super) v1_cpu: Option<PathBuf>,
}

impl CgroupDirs {
    /// Where `pid`'s limits are, from `/proc/<pid>/cgroup`.
    pub(super) fn of_process(pid: Pid, v1: &V1Mounts) -> Self {
        let text = cgroup::read(pid);
        Self {
            v2: parse_cgroup_v2_path(&text).and_then(|path| cgroup_dir(Path::new(path)).ok()),
            v1_memory: parse_cgroup_v1_path(&text, "memory").and_then(|path| v1.memory.as_ref()?.dir(path)),
            v1_cpu: parse_cgroup_v1_path(&text, "cpu").and_then(|path| v1.cpu.as_ref()?.dir(path)),
        }
    }
}

/// The cgroup v1 hierarchies holding the `memory` and `cpu` controllers,
/// if any: found once, by the files their root directories have.
#[derive(Clone, Debug, Default)]
pub(super) struct V1Mounts {
    memory: Option<V1Mount>,
    cpu: Option<V1Mount>,
}

#[derive(Clone, Debug)]
struct V1Mount {
    /// The hierarchy path mounted there (`/` unless in a container).
    root: PathBuf,
    mount_point: PathBuf,
}

impl V1Mounts {
    pub(super) fn read() -> Self {
        let text = mountinfo::read().unwrap_or_default();
        Self::from_mounts(&mountinfo::mounts_of_type(&text, "cgroup"), |path| path.is_file())
    }

    fn from_mounts(mounts: &[(String, PathBuf)], exists: impl Fn(&Path) -> bool) -> Self {
        let find = |file: &str| {
            mounts
                .iter()
                .find(|(_, mount_point)| exists(&mount_point.join(file)))
                .map(|(root, mount_point)| V1Mount { root: PathBuf::from(root), mount_point: mount_point.clone() })
        };
        Self { memory: find("memory.limit_in_bytes"), cpu: find("cpu.cfs_quota_us") }
    }
}

impl V1Mount {
    /// The directory of hierarchy path `path` (as `/proc/<pid>/cgroup`
    /// shows it), without letting `..` climb out of the mount.
    fn dir(&self, path: &str) -> Option<PathBuf> {
        let path = Path::new(path);
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        if relative.components().any(|c| matches!(c, Component::ParentDir)) {
            return None;
        }
        let dir: PathBuf = relative.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        Some(self.mount_point.join(dir))
    }
}

/// Limits by cgroup directories, read again after [`LIMIT_TTL`].
#[derive(Debug, Default)]
pub(super) struct LimitCache {
    entries: HashMap<CgroupDirs, (Limits, Instant)>,
}

impl LimitCache {
    pub(super) fn get(&mut self, dirs: &CgroupDirs, now: Instant) -> Limits {
        if let Some((limits, read)) = self.entries.get(dirs) {
            if now.saturating_duration_since(*read) < LIMIT_TTL {
                return *limits;
            }
        }
        // Stale entries of processes long gone would otherwise accumulate.
        self.entries.retain(|_, (_, read)| now.saturating_duration_since(*read) < LIMIT_TTL);
        let limits = [&dirs.v2, &dirs.v1_memory, &dirs.v1_cpu]
            .into_iter()
            .flatten()
            .map(|dir| effective_limits(dir))
            .fold(Limits::default(), Limits::tighter);
        self.entries.insert(dirs.clone(), (limits, now));
        limits
    }
}

/// The tightest CPU quota and memory limit of `dir` and its ancestors: a
/// parent's limit binds its children. Reads both the v2 files (`cpu.max`,
/// `memory.max`) and the v1 ones (`cpu.cfs_quota_us`,
/// `memory.limit_in_bytes`), whichever the hierarchy has. The walk stops at
/// the hierarchy's root (the first directory without `cgroup.procs` above it).
pub(super) fn effective_limits(dir: &Path) -> Limits {
    let read = |level: &Path, file: &str| fs::read_to_string(level.join(file)).ok();
    let mut limits = Limits::default();
    for level in dir.ancestors().take_while(|d| d.join("cgroup.procs").is_file()) {
        let v2_cpus = read(level, "cpu.max").and_then(|t| parse_cpu_max(&t));
        let v1_cpus = read(level, "cpu.cfs_quota_us")
            .and_then(|quota| parse_cfs_quota(&quota, &read(level, "cpu.cfs_period_us").unwrap_or_default()));
        let v2_mem = read(level, "memory.max").and_then(|t| parse_memory_max(&t));
        let v1_mem = read(level, "memory.limit_in_bytes").and_then(|t| parse_v1_memory_limit(&t));
        limits = limits
            .tighter(Limits { cpus: min_of(v2_cpus, v1_cpus, f64::min), mem_bytes: min_of(v2_mem, v1_mem, u64::min) });
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_combine() {
        let host = HostInfo { online_cpus: 4.0, meminfo: Some(MemInfo { total: 8 << 30, available: 4 << 30 }) };
        assert_eq!(host.capacity(None), 4.0);
        assert_eq!(host.capacity(Some(0.5)), 0.5);
        // A quota above the machine cannot be used.
        assert_eq!(host.capacity(Some(16.0)), 4.0);
        assert_eq!(host.mem_limit(None), 8 << 30);
        assert_eq!(host.mem_limit(Some(1 << 30)), 1 << 30);
        assert_eq!(host.mem_limit(Some(1 << 40)), 8 << 30);
        let no_meminfo = HostInfo { online_cpus: 1.0, meminfo: None };
        assert_eq!(no_meminfo.mem_limit(Some(1 << 30)), 1 << 30);
        assert_eq!(no_meminfo.mem_limit(None), 0);
    }

    #[test]
    fn limits_of_several_cgroups_add_up() {
        let half = Limits { cpus: Some(0.5), mem_bytes: Some(1 << 30) };
        let two = Limits { cpus: Some(2.0), mem_bytes: Some(2 << 30) };
        assert_eq!(Limits::sum([half, two]), Limits { cpus: Some(2.5), mem_bytes: Some(3 << 30) });
        // One process without a CPU limit can use every CPU.
        let no_cpu_limit = Limits { cpus: None, mem_bytes: Some(1 << 30) };
        assert_eq!(Limits::sum([half, no_cpu_limit]), Limits { cpus: None, mem_bytes: Some(2 << 30) });
        assert_eq!(Limits::sum([]), Limits::default());
        assert_eq!(half.tighter(two), half);
        assert_eq!(Limits::default().tighter(two), two);
    }

    /// A fake hierarchy: root/parent/child, each with `cgroup.procs`.
    fn hierarchy() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let parent = root.path().join("parent");
        let child = parent.join("child");
        fs::create_dir_all(&child).unwrap();
        for dir in [root.path(), &parent, &child] {
            fs::write(dir.join("cgroup.procs"), "").unwrap();
        }
        (root, parent, child)
    }

    #[test]
    fn effective_limits_take_the_tightest_ancestor() {
        let (root, parent, child) = hierarchy();
        fs::write(parent.join("cpu.max"), "150000 100000\n").unwrap();
        fs::write(parent.join("memory.max"), "max\n").unwrap();
        fs::write(child.join("cpu.max"), "max 100000\n").unwrap();
        fs::write(child.join("memory.max"), "1073741824\n").unwrap();
        assert_eq!(effective_limits(&child), Limits { cpus: Some(1.5), mem_bytes: Some(1 << 30) });
        fs::write(root.path().join("cpu.max"), "50000 100000\n").unwrap();
        fs::write(root.path().join("memory.max"), "536870912\n").unwrap();
        assert_eq!(effective_limits(&child), Limits { cpus: Some(0.5), mem_bytes: Some(512 << 20) });
        // Without limits anywhere.
        let bare = tempfile::tempdir().unwrap();
        fs::write(bare.path().join("cgroup.procs"), "").unwrap();
        assert_eq!(effective_limits(bare.path()), Limits::default());
    }

    #[test]
    fn cgroup_v1_limits() {
        let (root, parent, child) = hierarchy();
        // What an unlimited v1 memory cgroup reports.
        fs::write(root.path().join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::write(parent.join("memory.limit_in_bytes"), "2147483648\n").unwrap();
        fs::write(child.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        fs::write(child.join("cpu.cfs_period_us"), "100000\n").unwrap();
        fs::write(parent.join("cpu.cfs_quota_us"), "250000\n").unwrap();
        fs::write(parent.join("cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(effective_limits(&child), Limits { cpus: Some(2.5), mem_bytes: Some(2 << 30) });
    }

    #[test]
    fn limit_cache_combines_hierarchies_and_rereads_after_its_ttl() {
        let (_v2_root, _, v2) = hierarchy();
        let (_v1_root, _, v1_memory) = hierarchy();
        fs::write(v2.join("cpu.max"), "100000 100000\n").unwrap();
        fs::write(v1_memory.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        let dirs = CgroupDirs { v2: Some(v2.clone()), v1_memory: Some(v1_memory), v1_cpu: None };
        let mut cache = LimitCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.get(&dirs, t0), Limits { cpus: Some(1.0), mem_bytes: Some(1 << 30) });
        fs::write(v2.join("cpu.max"), "200000 100000\n").unwrap();
        assert_eq!(cache.get(&dirs, t0 + Duration::from_secs(1)).cpus, Some(1.0));
        assert_eq!(cache.get(&dirs, t0 + LIMIT_TTL).cpus, Some(2.0));
    }

    #[test]
    fn v1_mounts_found_by_their_files() {
        let mounts = vec![
            ("/".to_owned(), PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
            ("/".to_owned(), PathBuf::from("/sys/fs/cgroup/memory")),
            ("/docker/abc".to_owned(), PathBuf::from("/sys/fs/cgroup/pids")),
        ];
        let v1 = V1Mounts::from_mounts(&mounts, |path| {
            path == Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes")
                || path == Path::new("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us")
        });
        let memory = v1.memory.expect("memory hierarchy");
        assert_eq!(
            memory.dir("/system.slice/foo.service"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/system.slice/foo.service"))
        );
        assert_eq!(memory.dir("/"), Some(PathBuf::from("/sys/fs/cgroup/memory")));
        assert_eq!(memory.dir("/../../etc"), None);
        let cpu = v1.cpu.expect("cpu hierarchy");
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        // In a container the mount's root is the container's cgroup.
        let inside =
            V1Mount { root: PathBuf::from("/docker/abc"), mount_point: PathBuf::from("/sys/fs/cgroup/memory") };
        assert_eq!(inside.dir("/docker/abc/app"), Some(PathBuf::from("/sys/fs/cgroup/memory/app")));
        assert!(V1Mounts::from_mounts(&[], |_| true).memory.is_none());
    }
}
