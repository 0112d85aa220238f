//! `/proc/<pid>/stat`: a process's state, parent, CPU time and start time.

use crate::ids::Pid;

/// What stackwatch reads from `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, …
    pub state: char,
    /// Field 4: the parent's pid (0 for a pid namespace's init).
    pub ppid: Pid,
    /// Fields 14 + 15, `utime + stime`: CPU time of all the process's
    /// threads, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 20, `num_threads`: how many CPUs the process can keep busy at
    /// most (what a CPU rule in cores can reach).
    pub threads: u64,
    /// Field 22, `starttime`: when the process started, in clock ticks since
    /// boot. With the pid it identifies a process across pid reuse.
    pub start_ticks: u64,
}

/// Parses a `/proc/<pid>/stat` line. The `comm` field may contain spaces and
/// parentheses, so the fields are counted after the last `)`.
pub(crate) fn parse(text: &str) -> Option<ProcStat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: Pid::new(u32::try_from(field(4)?).ok()?),
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        threads: field(20)?,
        start_ticks: field(22)?,
    })
}

/// `/proc/<pid>/stat` of a live process.
pub(crate) fn read(pid: Pid) -> Option<ProcStat> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A process's start time (clock ticks since boot), which tells a process
/// from a later one that reuses its pid.
pub(crate) fn start_time(pid: Pid) -> Option<u64> {
    read(pid).map(|s| s.start_ticks)
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
        assert_eq!(
            parse(line),
            Some(ProcStat { state: 'S', ppid: Pid::new(1), cpu_ticks: 10, threads: 1, start_ticks: 123456 })
        );
    }

    #[test]
    fn proc_stat_with_parentheses_and_spaces_in_comm() {
        let line = "77 (my (weird) prog) R 5 77 77 0 -1 0 0 0 0 0 250 50 0 0 20 0 3 0 999 0 0";
        assert_eq!(
            parse(line),
            Some(ProcStat { state: 'R', ppid: Pid::new(5), cpu_ticks: 300, threads: 3, start_ticks: 999 })
        );
    }

    #[test]
    fn proc_stat_garbage() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("garbage"), None);
        // Cut before the start time.
        assert_eq!(parse("1 (x) R 1 1 1 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0"), None);
        assert_eq!(parse("1 (x) R 1 1 1 0 -1 0 0 0 0 0 five 5 0 0 20 0 1 0 7"), None);
    }

    #[test]
    fn own_process() {
        let me = read(Pid::current()).expect("own stat");
        assert_ne!(me.state, 'Z');
        assert!(me.ppid.get() > 0);
        assert_eq!(start_time(Pid::current()), Some(me.start_ticks));
        assert_eq!(start_time(Pid::new(u32::MAX)), None);
    }
}
