//! Bookkeeping that turns a changing set of processes into one target: a
//! CPU counter that only grows however processes come, go and recycle pids,
//! and a `--name` matcher cheap enough to run every second.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

use regex::Regex;

use super::ProcStat;

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
pub(super) struct PidTracker {
    procs: HashMap<u32, Tracked>,
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
    pub(super) fn update(&mut self, boot_ticks: Option<u64>, seen: &[(u32, ProcStat)]) -> u64 {
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
    pub(super) fn start_ticks(&self, pid: u32) -> Option<u64> {
        self.procs.get(&pid).map(|t| t.start_ticks)
    }
}

/// How long a verdict on a pid is trusted. Processes rarely change name or
/// command line (an `exec`), so re-reading `comm` and `cmdline` of every
/// process on the host every second would be wasted work; new pids are
/// always checked at once, which is what following a restart needs.
const RECHECK_AFTER: Duration = Duration::from_secs(10);

/// How long after a pid is first listed it is checked at every scan.
const YOUNG: Duration = Duration::from_secs(3);

/// Finds the processes whose name or command line matches a `--name` regex,
/// with the same rules as [`crate::target::find_pids_by_name`] (never this
/// process, nor the `sudo` running it; zombies are left to the caller, which
/// reads their state anyway), at the cost of one `/proc` listing per scan
/// plus two small reads per pid not seen recently.
#[derive(Debug)]
pub(super) struct NameMatcher {
    re: Regex,
    excluded: Vec<u32>,
    verdicts: HashMap<u32, Verdict>,
}

#[derive(Clone, Copy, Debug)]
struct Verdict {
    matches: bool,
    checked: Instant,
    /// When the pid was first listed: a process between `fork` and `exec`
    /// still has its parent's name, so young pids are checked at every scan.
    first_seen: Instant,
}

impl NameMatcher {
    pub(super) fn new(re: Regex) -> Self {
        let me = std::process::id();
        // Our own `sudo`/`sh -c` wrappers match only because they run us: the
        // same exclusion as `target`, computed once (our ancestors do not change).
        let mut excluded = crate::target::wrapper_ancestors(me);
        excluded.push(me);
        Self { re, excluded, verdicts: HashMap::new() }
    }

    /// The matching pids, ascending.
    pub(super) fn scan(&mut self, now: Instant) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            tracing::debug!("cannot list `/proc`");
            return Vec::new();
        };
        let listed: Vec<u32> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
        // Forget pids that are gone, so a recycled one is looked at afresh.
        self.verdicts.retain(|pid, _| listed.contains(pid));
        let mut pids = Vec::new();
        for pid in listed {
            if self.excluded.contains(&pid) {
                continue;
            }
            let matches = match self.verdicts.get(&pid) {
                Some(v) if v.is_fresh(pid, now) => v.matches,
                _ => self.recheck(pid, now),
            };
            if matches {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids
    }

    /// Reads the name and command line of `pid` again and returns whether
    /// they match.
    pub(super) fn recheck(&mut self, pid: u32, now: Instant) -> bool {
        let Some(comm) = read_comm(pid) else {
            // Gone: nothing to remember.
            self.verdicts.remove(&pid);
            return false;
        };
        let matches = self.re.is_match(&comm) || crate::target::command_line(pid).is_some_and(|c| self.re.is_match(&c));
        let first_seen = self.verdicts.get(&pid).map_or(now, |v| v.first_seen);
        self.verdicts.insert(pid, Verdict { matches, checked: now, first_seen });
        matches
    }
}

impl Verdict {
    fn is_fresh(&self, pid: u32, now: Instant) -> bool {
        now.saturating_duration_since(self.first_seen) >= YOUNG
            && now.saturating_duration_since(self.checked) < recheck_period(pid)
    }
}

/// Spread over 5 s so the pids first seen together are not all read again
/// in the same sample.
fn recheck_period(pid: u32) -> Duration {
    RECHECK_AFTER + Duration::from_millis(u64::from(pid % 64) * 80)
}

fn read_comm(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(cpu_ticks: u64, start_ticks: u64) -> ProcStat {
        ProcStat { state: 'R', cpu_ticks, start_ticks }
    }

    #[test]
    fn first_update_is_the_baseline() {
        let mut t = PidTracker::default();
        assert_eq!(t.update(Some(1000), &[(10, stat(500, 10)), (11, stat(70, 900))]), 0);
        assert_eq!(t.update(Some(1100), &[(10, stat(530, 10)), (11, stat(75, 900))]), 35);
    }

    #[test]
    fn exit_does_not_go_backwards() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(10, stat(500, 10)), (11, stat(70, 900))]);
        assert_eq!(t.update(Some(1100), &[(10, stat(600, 10)), (11, stat(80, 900))]), 110);
        // 11 exited: its 80 ticks stay counted.
        assert_eq!(t.update(Some(1200), &[(10, stat(650, 10))]), 160);
        assert_eq!(t.update(Some(1300), &[]), 160);
    }

    #[test]
    fn restart_counts_the_new_process_from_its_start() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(10, stat(500, 10))]);
        // Service restarted between samples as pid 20, started at tick 1050.
        assert_eq!(t.update(Some(1100), &[(20, stat(40, 1050))]), 40);
        assert_eq!(t.update(Some(1200), &[(20, stat(140, 1050))]), 140);
    }

    #[test]
    fn recycled_pid_is_a_new_process() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(10, stat(5000, 10))]);
        // Same pid, new start time, far fewer ticks: not a negative delta.
        assert_eq!(t.update(Some(1100), &[(10, stat(20, 1080))]), 20);
        assert_eq!(t.update(Some(1200), &[(10, stat(50, 1080))]), 50);
        assert_eq!(t.start_ticks(10), Some(1080));
    }

    #[test]
    fn process_that_only_now_matches_counts_from_now() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(10, stat(500, 10))]);
        // Running since tick 300 (it exec'd into a matching name): its past
        // CPU time is not part of this interval.
        assert_eq!(t.update(Some(1100), &[(10, stat(510, 10)), (30, stat(9000, 300))]), 10);
        assert_eq!(t.update(Some(1200), &[(10, stat(510, 10)), (30, stat(9050, 300))]), 60);
    }

    #[test]
    fn counter_that_goes_down_counts_nothing() {
        let mut t = PidTracker::default();
        t.update(Some(1000), &[(10, stat(500, 10))]);
        assert_eq!(t.update(Some(1100), &[(10, stat(400, 10))]), 0);
        assert_eq!(t.update(Some(1200), &[(10, stat(450, 10))]), 50);
    }

    #[test]
    fn without_boot_time_new_processes_are_baselines() {
        let mut t = PidTracker::default();
        t.update(None, &[]);
        assert_eq!(t.update(None, &[(20, stat(40, 1050))]), 0);
        assert_eq!(t.update(None, &[(20, stat(45, 1050))]), 5);
    }

    #[test]
    fn verdicts_of_young_pids_are_not_trusted() {
        let t0 = Instant::now();
        let young = Verdict { matches: false, checked: t0, first_seen: t0 };
        assert!(!young.is_fresh(1, t0 + Duration::from_secs(1)));
        let settled = Verdict { matches: false, checked: t0 + YOUNG, first_seen: t0 };
        assert!(settled.is_fresh(1, t0 + YOUNG + Duration::from_secs(1)));
        assert!(!settled.is_fresh(1, t0 + YOUNG + recheck_period(1)));
        // Spread over 5 s at most.
        assert!((0..1000)
            .map(recheck_period)
            .all(|p| p >= RECHECK_AFTER && p < RECHECK_AFTER + Duration::from_secs(6)));
    }

    #[test]
    fn matcher_finds_and_forgets() {
        let tag = format!("3600.{}7", std::process::id());
        let Ok(mut child) = std::process::Command::new("sleep").arg(&tag).spawn() else {
            panic!("cannot spawn `sleep`");
        };
        let pid = child.id();
        let mut m = NameMatcher::new(Regex::new(&format!(r"^sleep {}$", regex::escape(&tag))).unwrap());
        let start = Instant::now();
        // Until it has exec'd, the child is a copy of this test binary.
        let mut found = false;
        for _ in 0..500 {
            if m.scan(Instant::now()).contains(&pid) {
                found = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "`sleep {tag}` not found");
        let now = Instant::now();
        assert!(!m.scan(now).contains(&std::process::id()));
        assert!(!m.scan(now).contains(&pid));
        assert!(!m.verdicts.contains_key(&pid));
        // Above the largest possible pid: a verdict on it must not survive.
        m.verdicts.insert(4_194_305, Verdict { matches: true, checked: start, first_seen: start });
        assert!(!m.scan(now).contains(&4_194_305));
        assert!(!m.verdicts.contains_key(&4_194_305));
    }
}
