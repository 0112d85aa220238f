//! CPU time counters: of the host (`/proc/stat`), of a cgroup v2 directory
//! (`cpu.stat`) and of a changing set of processes (their
//! `/proc/<pid>/stat`, summed by a [`PidTracker`]). The CPU meter of a
//! capture and the trigger sampler both read them.

use std::collections::HashMap;
use std::path::Path;

use super::stat::ProcStat;
use crate::ids::Pid;
use crate::sys::ticks_per_second;

/// Busy (non-idle, non-iowait) CPU seconds of the whole host since boot.
pub(crate) fn host_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_host_busy_ticks(&stat).map(|t| t as f64 / ticks_per_second())
}

pub(crate) fn parse_host_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice;
    // guest time is already included in user/nice.
    let total: u64 = v.iter().take(8).sum();
    Some(total.saturating_sub(*v.get(3)?).saturating_sub(*v.get(4).unwrap_or(&0)))
}

/// `usage_usec` of a cgroup v2 directory, in seconds.
pub(crate) fn cgroup_cpu_seconds(dir: &Path) -> Option<f64> {
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let usec: u64 = stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?.trim().parse().ok()?;
    Some(usec as f64 / 1e6)
}

/// Sums the CPU time of a set of processes into a counter that never goes
/// backwards.
///
/// Each process is identified by its pid and start time, so a process that
/// exits takes nothing away from the total, and a recycled pid is a new
/// process rather than a counter that went down. A process seen for the first
/// time counts all of its CPU time if it started since the previous update
/// (a restarted service's first second matters), and only what it uses from
/// now on otherwise (it was running before it matched, or before `watch`
/// started). CPU time a process used between the last update and its exit is
/// not seen: the total is a slight underestimate when processes churn.
#[derive(Debug, Default)]
pub(crate) struct PidTracker {
    procs: HashMap<Pid, Tracked>,
    /// Ticks summed over every update.
    total_ticks: u64,
    /// Time since boot at the previous update, in clock ticks.
    last_boot_ticks: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Tracked {
    start_ticks: u64,
    cpu_ticks: u64,
}

impl PidTracker {
    /// Takes the processes of the target now, with `boot_ticks` read before
    /// they were listed, and returns the total CPU ticks so far.
    pub(crate) fn update(&mut self, boot_ticks: Option<u64>, seen: &[(Pid, ProcStat)]) -> u64 {
        let mut procs = HashMap::with_capacity(seen.len());
        for &(pid, stat) in seen {
            let delta = match self.procs.get(&pid) {
                Some(t) if t.start_ticks == stat.start_ticks => stat.cpu_ticks.saturating_sub(t.cpu_ticks),
                _ => match self.last_boot_ticks {
                    Some(previous) if stat.start_ticks >= previous => stat.cpu_ticks,
                    _ => 0,
                },
            };
            self.total_ticks = self.total_ticks.saturating_add(delta);
            procs.insert(pid, Tracked { start_ticks: stat.start_ticks, cpu_ticks: stat.cpu_ticks });
        }
        self.procs = procs;
        if boot_ticks.is_some() {
            self.last_boot_ticks = boot_ticks;
        }
        self.total_ticks
    }

    /// Start time of the tracked process with this pid.
    pub(crate) fn start_ticks(&self, pid: Pid) -> Option<u64> {
        self.procs.get(&pid).map(|t| t.start_ticks)
    }
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

    fn stat(cpu_ticks: u64, start_ticks: u64) -> ProcStat {
        ProcStat { state: 'R', ppid: Pid::new(1), cpu_ticks, threads: 1, start_ticks }
    }

    #[test]
    fn first_update_is_the_baseline() {
        let mut t = PidTracker::default();
        assert_eq!(t.update(Some(1000), &[(Pid::new(10), stat(500, 10)), (Pid::new(11), stat(70, 900))]), 0);
        assert_eq!(t.update(Some(1100), &[(Pid::new(10), stat(530, 10)), (Pid::new(11), stat(75, 900))]), 35);
    }

    #[test]
    fn exit_does_not_go_backwards() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(Pid::new(10), stat(500, 10)), (Pid::new(11), stat(70, 900))]);
        assert_eq!(t.update(Some(1100), &[(Pid::new(10), stat(600, 10)), (Pid::new(11), stat(80, 900))]), 110);
        // 11 exited: its 80 ticks stay counted.
        assert_eq!(t.update(Some(1200), &[(Pid::new(10), stat(650, 10))]), 160);
        assert_eq!(t.update(Some(1300), &[]), 160);
    }

    #[test]
    fn restart_counts_the_new_process_from_its_start() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(Pid::new(10), stat(500, 10))]);
        // Service restarted between samples as pid 20, started at tick 1050.
        assert_eq!(t.update(Some(1100), &[(Pid::new(20), stat(40, 1050))]), 40);
        assert_eq!(t.update(Some(1200), &[(Pid::new(20), stat(140, 1050))]), 140);
    }

    #[test]
    fn recycled_pid_is_a_new_process() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(Pid::new(10), stat(5000, 10))]);
        // Same pid, new start time, far fewer ticks: not a negative delta.
        assert_eq!(t.update(Some(1100), &[(Pid::new(10), stat(20, 1080))]), 20);
        assert_eq!(t.update(Some(1200), &[(Pid::new(10), stat(50, 1080))]), 50);
        assert_eq!(t.start_ticks(Pid::new(10)), Some(1080));
    }

    #[test]
    fn process_that_only_now_matches_counts_from_now() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(Pid::new(10), stat(500, 10))]);
        // Running since tick 300 (it exec'd into a matching name): its past
        // CPU time is not part of this interval.
        assert_eq!(t.update(Some(1100), &[(Pid::new(10), stat(510, 10)), (Pid::new(30), stat(9000, 300))]), 10);
        assert_eq!(t.update(Some(1200), &[(Pid::new(10), stat(510, 10)), (Pid::new(30), stat(9050, 300))]), 60);
    }

    #[test]
    fn counter_that_goes_down_counts_nothing() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(Pid::new(10), stat(500, 10))]);
        assert_eq!(t.update(Some(1100), &[(Pid::new(10), stat(400, 10))]), 0);
        assert_eq!(t.update(Some(1200), &[(Pid::new(10), stat(450, 10))]), 50);
    }

    #[test]
    fn without_boot_time_new_processes_are_baselines() {
        let mut t = PidTracker::default();
        t.update(None, &[]);
        assert_eq!(t.update(None, &[(Pid::new(20), stat(40, 1050))]), 0);
        assert_eq!(t.update(None, &[(Pid::new(20), stat(45, 1050))]), 5);
    }
}
