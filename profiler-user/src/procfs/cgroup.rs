//! A process's cgroups (`/proc/<pid>/cgroup`) and what a cgroup directory
//! says about itself: its processes, its memory use and the limits it sets,
//! in the v2 (`cpu.max`, `memory.max`) and v1 (`cpu.cfs_quota_us`,
//! `memory.limit_in_bytes`) spellings.

use std::fs;
use std::path::Path;

use crate::ids::Pid;

/// `/proc/<pid>/cgroup` of a live process (empty when unreadable).
pub(crate) fn read(pid: Pid) -> String {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
}

/// The processes directly in the cgroup directory `dir` (`cgroup.procs`).
pub(crate) fn procs(dir: &Path) -> Vec<Pid> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok().map(Pid::new)).collect())
        .unwrap_or_default()
}

/// Every process in the cgroup `dir` and its descendants, ascending.
/// Bounded, since a hierarchy is not guaranteed to be small or stable while
/// it is walked.
pub(crate) fn tree_procs(dir: &Path) -> Vec<Pid> {
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
        pids.extend(procs(&dir));
        if let Ok(entries) = fs::read_dir(&dir) {
            pending.extend(
                entries.filter_map(|e| e.ok()).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// `memory.current` of a cgroup v2 directory, in bytes.
pub(crate) fn memory_current(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join("memory.current")).ok()?.trim().parse().ok()
}

/// CPUs a cgroup v2 `cpu.max` (`$QUOTA $PERIOD`, microseconds) allows:
/// `50000 100000` is half a CPU, `max 100000` (or anything unreadable) no
/// limit.
pub(crate) fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: u64 = fields.next()?.parse().ok()?;
    // The kernel always prints the period; 100 ms is its default.
    let period: u64 = fields.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if quota == 0 || period == 0 {
        return None;
    }
    Some(quota as f64 / period as f64)
}

/// A cgroup v2 `memory.max` in bytes; `max` means no limit.
pub(crate) fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The cgroup v2 path of a process from `/proc/<pid>/cgroup`: the
/// `0::/system.slice/foo.service` line. On a hybrid host the v1 lines come
/// first; on a v1-only host there is none.
pub(crate) fn parse_cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim_end_matches(" (deleted)")).filter(|p| !p.is_empty())
}

/// The cgroup v1 path of a process for `controller` from
/// `/proc/<pid>/cgroup`: the `4:memory:/docker/abc` line (controllers may
/// share a line: `3:cpu,cpuacct:/…`).
pub(crate) fn parse_cgroup_v1_path<'a>(text: &'a str, controller: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == controller).then_some(path)
    })
}

/// CPUs a cgroup v1 quota allows: `cpu.cfs_quota_us` over
/// `cpu.cfs_period_us`; a quota of `-1` means no limit.
pub(crate) fn parse_cfs_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: u64 = period.trim().parse().ok()?;
    if quota <= 0 || period == 0 {
        return None;
    }
    Some(quota as f64 / period as f64)
}

/// A cgroup v1 `memory.limit_in_bytes`. Unlimited is reported as the
/// largest page-aligned `i64` (`9223372036854771712` with 4 KiB pages), so
/// anything from 2^62 up means no limit.
pub(crate) fn parse_v1_memory_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&bytes| bytes < 1 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("max"), None);
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("200000 100000"), Some(2.0));
        assert_eq!(parse_cpu_max("150000"), Some(1.5));
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("0 100000"), None);
        assert_eq!(parse_cpu_max("1000 0"), None);
    }

    #[test]
    fn memory_max() {
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("536870912\n"), Some(512 << 20));
        assert_eq!(parse_memory_max(""), None);
    }

    #[test]
    fn cgroup_v2_path() {
        let hybrid = "12:memory:/system.slice/foo.service\n1:name=systemd:/system.slice/foo.service\n\
                      0::/system.slice/foo.service\n";
        assert_eq!(parse_cgroup_v2_path(hybrid), Some("/system.slice/foo.service"));
        assert_eq!(parse_cgroup_v2_path("0::/\n"), Some("/"));
        assert_eq!(parse_cgroup_v2_path("0::/gone (deleted)\n"), Some("/gone"));
        assert_eq!(parse_cgroup_v2_path("4:memory:/x\n"), None);
        assert_eq!(parse_cgroup_v2_path(""), None);
    }

    #[test]
    fn cgroup_v1_path() {
        let text = "12:pids:/docker/abc\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc/x\n\
                    1:name=systemd:/docker/abc\n0::/\n";
        assert_eq!(parse_cgroup_v1_path(text, "memory"), Some("/docker/abc"));
        assert_eq!(parse_cgroup_v1_path(text, "cpu"), Some("/docker/abc/x"));
        assert_eq!(parse_cgroup_v1_path(text, "cpuset"), None);
        assert_eq!(parse_cgroup_v1_path("0::/user.slice\n", "memory"), None);
    }

    #[test]
    fn cgroup_v1_limits() {
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs_quota("50000\n", "100000\n"), Some(0.5));
        assert_eq!(parse_cfs_quota("400000", "100000"), Some(4.0));
        assert_eq!(parse_cfs_quota("50000", ""), None);
        assert_eq!(parse_cfs_quota("50000", "0"), None);
        assert_eq!(parse_v1_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_v1_memory_limit("2147483648\n"), Some(2 << 30));
        assert_eq!(parse_v1_memory_limit("max"), None);
    }

    #[test]
    fn cgroup_processes_include_descendants() {
        let root = tempfile::tempdir().unwrap();
        let child = root.path().join("a/b");
        fs::create_dir_all(&child).unwrap();
        fs::write(root.path().join("cgroup.procs"), "30\n10\n").unwrap();
        fs::write(child.join("cgroup.procs"), "20\n10\n").unwrap();
        assert_eq!(tree_procs(root.path()), [10, 20, 30].map(Pid::new));
    }
}
