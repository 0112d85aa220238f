//! CPU time counters of the host and of cgroups, read from procfs and
//! cgroupfs. Per-process times come from [`crate::metrics::parse_proc_stat`];
//! [`crate::metrics::CpuMeter`] turns these into a capture's CPU time.

use std::path::Path;

/// Clock ticks per second, the unit of `/proc/<pid>/stat` times.
pub(crate) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy (non-idle, non-iowait) CPU seconds of the whole host since boot.
pub fn host_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_host_busy_ticks(&stat).map(|t| t as f64 / ticks_per_second())
}

pub fn parse_host_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice;
    // guest time is already included in user/nice.
    let total: u64 = v.iter().take(8).sum();
    Some(total.saturating_sub(*v.get(3)?).saturating_sub(*v.get(4).unwrap_or(&0)))
}

/// `usage_usec` of a cgroup v2 directory, in seconds.
pub fn cgroup_cpu_seconds(dir: &Path) -> Option<f64> {
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let usec: u64 = stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?.trim().parse().ok()?;
    Some(usec as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 10 50 1000 20 5 5 0 0 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n";
        assert_eq!(parse_host_busy_ticks(stat), Some(170));
    }

    #[test]
    fn host_has_cpu_time() {
        assert!(host_cpu_seconds().unwrap() > 0.0);
    }
}
