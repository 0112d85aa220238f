//! A `--name` matcher cheap enough to run every second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::ids::Pid;
use crate::procfs::process;

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
    excluded: Vec<Pid>,
    verdicts: HashMap<Pid, Verdict>,
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
        let me = Pid::current();
        // Our own `sudo`/`sh -c` wrappers match only because they run us: the
        // same exclusion as `target`, computed once (our ancestors do not change).
        let mut excluded = crate::target::wrapper_ancestors(me);
        excluded.push(me);
        Self { re, excluded, verdicts: HashMap::new() }
    }

    /// The matching pids, ascending.
    pub(super) fn scan(&mut self, now: Instant) -> Vec<Pid> {
        let Some(listed) = process::all_pids() else {
            tracing::debug!("cannot list `/proc`");
            return Vec::new();
        };
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
    pub(super) fn recheck(&mut self, pid: Pid, now: Instant) -> bool {
        let Some(comm) = process::comm(pid) else {
            // Gone: nothing to remember.
            self.verdicts.remove(&pid);
            return false;
        };
        let matches = self.re.is_match(&comm) || process::command_line(pid).is_some_and(|c| self.re.is_match(&c));
        let first_seen = self.verdicts.get(&pid).map_or(now, |v| v.first_seen);
        self.verdicts.insert(pid, Verdict { matches, checked: now, first_seen });
        matches
    }
}

impl Verdict {
    fn is_fresh(&self, pid: Pid, now: Instant) -> bool {
        now.saturating_duration_since(self.first_seen) >= YOUNG
            && now.saturating_duration_since(self.checked) < recheck_period(pid)
    }
}

/// Spread over 5 s so the pids first seen together are not all read again
/// in the same sample.
fn recheck_period(pid: Pid) -> Duration {
    RECHECK_AFTER + Duration::from_millis(u64::from(pid.get() % 64) * 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_of_young_pids_are_not_trusted() {
        let t0 = Instant::now();
        let young = Verdict { matches: false, checked: t0, first_seen: t0 };
        assert!(!young.is_fresh(Pid::new(1), t0 + Duration::from_secs(1)));
        let settled = Verdict { matches: false, checked: t0 + YOUNG, first_seen: t0 };
        assert!(settled.is_fresh(Pid::new(1), t0 + YOUNG + Duration::from_secs(1)));
        assert!(!settled.is_fresh(Pid::new(1), t0 + YOUNG + recheck_period(Pid::new(1))));
        // Spread over 5 s at most.
        assert!((0..1000)
            .map(|p| recheck_period(Pid::new(p)))
            .all(|p| p >= RECHECK_AFTER && p < RECHECK_AFTER + Duration::from_secs(6)));
    }

    #[test]
    fn matcher_finds_and_forgets() {
        let tag = format!("3600.{}7", std::process::id());
        let Ok(mut child) = std::process::Command::new("sleep").arg(&tag).spawn() else {
            panic!("cannot spawn `sleep`");
        };
        let pid = Pid::new(child.id());
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
        assert!(!m.scan(now).contains(&Pid::current()));
        assert!(!m.scan(now).contains(&pid));
        assert!(!m.verdicts.contains_key(&pid));
        // Above the largest possible pid: a verdict on it must not survive.
        let beyond = Pid::new(4_194_305);
        m.verdicts.insert(beyond, Verdict { matches: true, checked: start, first_seen: start });
        assert!(!m.scan(now).contains(&beyond));
        assert!(!m.verdicts.contains_key(&beyond));
    }
}
