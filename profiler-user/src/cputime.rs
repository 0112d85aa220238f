//! CPU time used by a target, read from procfs and cgroupfs, so a capture can
//! report how many samples a lossless run would have collected.

use std::path::Path;

use crate::target::Filter;

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

/// utime + stime of a process (all its threads), in seconds.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|t| t as f64 / ticks_per_second())
}

/// utime + stime in ticks from a `/proc/<pid>/stat` line. The comm field may
/// contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3 (index 0 here); utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
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

/// A running total of the CPU time of a target, sampled at start and end.
pub struct CpuMeter {
    filter: Filter,
    cgroup_dir: Option<std::path::PathBuf>,
    start: Option<f64>,
}

impl CpuMeter {
    pub fn start(filter: &Filter, cgroup_dir: Option<&Path>) -> Self {
        let mut m = Self { filter: filter.clone(), cgroup_dir: cgroup_dir.map(Path::to_path_buf), start: None };
        m.start = m.read();
        m
    }

    /// Pids currently tracked (for `Filter::Pids` they change with `--name`).
    pub fn set_pids(&mut self, pids: &[u32]) {
        if let Filter::Pids(p) = &mut self.filter {
            // A new process's CPU time before it was added counts too; the
            // small error is acceptable for a fidelity figure.
            for pid in pids {
                if !p.contains(pid) {
                    p.push(*pid);
                    self.start = self.start.map(|s| s + process_cpu_seconds(*pid).unwrap_or(0.0));
                }
            }
        }
    }

    fn read(&self) -> Option<f64> {
        match &self.filter {
            Filter::All => host_cpu_seconds(),
            Filter::Pids(pids) => Some(pids.iter().filter_map(|&p| process_cpu_seconds(p)).sum()),
            Filter::Cgroup { .. } => cgroup_cpu_seconds(self.cgroup_dir.as_deref()?),
        }
    }

    /// CPU seconds used since `start`, when both readings exist. For pids,
    /// a process that exited in between makes the figure an underestimate.
    pub fn elapsed(&self) -> Option<f64> {
        Some((self.read()? - self.start?).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_comm() {
        let line = "1234 (my (weird) prog) R 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn host_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 10 50 1000 20 5 5 0 0 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n";
        assert_eq!(parse_host_busy_ticks(stat), Some(170));
    }

    #[test]
    fn own_process_has_cpu_time() {
        let t = process_cpu_seconds(std::process::id()).unwrap();
        assert!(t >= 0.0);
        assert!(host_cpu_seconds().unwrap() > 0.0);
    }
}
