//! Parsers for the procfs, sysfs and cgroupfs files the sampler reads. Pure
//! functions on the file's text, so each format is tested on literal
//! strings; `None` means "not there or not understood", which callers treat
//! as "no value", never as zero.

/// What the sampler needs from `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, …
    pub state: char,
    /// Fields 14 + 15, `utime + stime`: CPU time of all the process's
    /// threads, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 22, `starttime`: when the process started, in clock ticks since
    /// boot. With the pid it identifies a process across pid reuse.
    pub start_ticks: u64,
}

/// Parses a `/proc/<pid>/stat` line. The `comm` field may contain spaces and
/// parentheses, so the fields are counted after the last `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
    })
}

/// `VmRSS` from `/proc/<pid>/status`, in bytes. Kernel threads have no
/// `VmRSS` line and no resident memory of their own: `Some(0)`.
pub fn parse_vm_rss(text: &str) -> Option<u64> {
    if !text.lines().any(|l| l.starts_with("Name:")) {
        return None;
    }
    match text.lines().find_map(|l| l.strip_prefix("VmRSS:")) {
        Some(value) => parse_kib(value),
        None => Some(0),
    }
}

/// The host's memory from `/proc/meminfo`, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    /// Memory available for new work without swapping: `MemAvailable`, or
    /// on kernels before 3.14 its old approximation `MemFree + Buffers +
    /// Cached`.
    pub available: u64,
}

pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).and_then(parse_kib);
    let total = value("MemTotal")?;
    let available = match value("MemAvailable") {
        Some(available) => available,
        None => value("MemFree")? + value("Buffers").unwrap_or(0) + value("Cached").unwrap_or(0),
    };
    Some(MemInfo { total, available: available.min(total) })
}

/// `  1234 kB` → 1263616.
fn parse_kib(value: &str) -> Option<u64> {
    let value = value.trim();
    let number = value.strip_suffix("kB").unwrap_or(value).trim();
    number.parse::<u64>().ok()?.checked_mul(1024)
}

/// Number of CPUs in a kernel CPU list such as
/// `/sys/devices/system/cpu/online`: `0-3`, `0-1,4`, `0,2-3,8-11`.
pub fn parse_cpu_list(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut count: u32 = 0;
    for range in text.split(',') {
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (first.trim().parse::<u32>().ok()?, last.trim().parse::<u32>().ok()?),
            None => {
                let cpu = range.trim().parse::<u32>().ok()?;
                (cpu, cpu)
            }
        };
        count = count.checked_add(last.checked_sub(first)?.checked_add(1)?)?;
    }
    Some(count)
}

/// CPUs a cgroup v2 `cpu.max` (`$QUOTA $PERIOD`, microseconds) allows:
/// `50000 100000` is half a CPU, `max 100000` (or anything unreadable) no
/// limit.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
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
pub fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The cgroup v2 path of a process from `/proc/<pid>/cgroup`: the
/// `0::/system.slice/foo.service` line. On a hybrid host the v1 lines come
/// first; on a v1-only host there is none.
pub fn parse_cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim_end_matches(" (deleted)")).filter(|p| !p.is_empty())
}

/// The cgroup v1 path of a process for `controller` from
/// `/proc/<pid>/cgroup`: the `4:memory:/docker/abc` line (controllers may
/// share a line: `3:cpu,cpuacct:/…`).
pub fn parse_cgroup_v1_path<'a>(text: &'a str, controller: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == controller).then_some(path)
    })
}

/// CPUs a cgroup v1 quota allows: `cpu.cfs_quota_us` over
/// `cpu.cfs_period_us`; a quota of `-1` means no limit.
pub fn parse_cfs_quota(quota: &str, period: &str) -> Option<f64> {
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
pub fn parse_v1_memory_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&bytes| bytes < 1 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat() {
        // Real line of `sleep` with fields 14/15 (utime/stime) = 7/3 and
        // field 22 (starttime) = 123456.
        let line = "4242 (sleep) S 1 4242 4242 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 123456 2359296 128 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_proc_stat(line), Some(ProcStat { state: 'S', cpu_ticks: 10, start_ticks: 123456 }));
    }

    #[test]
    fn proc_stat_with_parentheses_and_spaces_in_comm() {
        let line = "77 (my (weird) prog) R 1 77 77 0 -1 0 0 0 0 0 250 50 0 0 20 0 3 0 999 0 0";
        assert_eq!(parse_proc_stat(line), Some(ProcStat { state: 'R', cpu_ticks: 300, start_ticks: 999 }));
    }

    #[test]
    fn proc_stat_garbage() {
        assert_eq!(parse_proc_stat(""), None);
        assert_eq!(parse_proc_stat("garbage"), None);
        // Cut before the start time.
        assert_eq!(parse_proc_stat("1 (x) R 1 1 1 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0"), None);
        assert_eq!(parse_proc_stat("1 (x) R 1 1 1 0 -1 0 0 0 0 0 five 5 0 0 20 0 1 0 7"), None);
    }

    #[test]
    fn vm_rss() {
        let status = "Name:\tredis-server\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  100000 kB\n\
                      VmRSS:\t   20480 kB\nRssAnon:\t   10240 kB\n";
        assert_eq!(parse_vm_rss(status), Some(20480 * 1024));
        // A kernel thread.
        assert_eq!(parse_vm_rss("Name:\tkthreadd\nState:\tS (sleeping)\nTgid:\t2\n"), Some(0));
        assert_eq!(parse_vm_rss(""), None);
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t lots kB\n"), None);
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:        8000000 kB\nMemFree:          500000 kB\nMemAvailable:    6000000 kB\n\
                    Buffers:          100000 kB\nCached:          2000000 kB\n";
        assert_eq!(parse_meminfo(text), Some(MemInfo { total: 8_000_000 * 1024, available: 6_000_000 * 1024 }));
    }

    #[test]
    fn meminfo_before_mem_available() {
        let text = "MemTotal:        8000000 kB\nMemFree:          500000 kB\n\
                    Buffers:          100000 kB\nCached:          2000000 kB\n";
        assert_eq!(parse_meminfo(text), Some(MemInfo { total: 8_000_000 * 1024, available: 2_600_000 * 1024 }));
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo(""), None);
    }

    #[test]
    fn cpu_lists() {
        for (text, count) in [("0", 1), ("0-1\n", 2), ("0-1,4", 3), ("0,2-3,8-11", 7), ("0-127", 128)] {
            assert_eq!(parse_cpu_list(text), Some(count), "{text:?}");
        }
        for text in ["", "\n", "x", "3-1", "0-", "0,,1"] {
            assert_eq!(parse_cpu_list(text), None, "{text:?}");
        }
    }

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
}
