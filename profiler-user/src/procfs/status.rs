//! `/proc/<pid>/status`: the fields of it stackwatch needs.

use crate::ids::Pid;

/// `/proc/<pid>/status` of a live process.
pub(crate) fn read(pid: Pid) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
}

/// `Tgid:`: the process a thread belongs to (its own id for a process).
pub(crate) fn tgid(status: &str) -> Option<Pid> {
    field(status, "Tgid:")?.trim().parse().ok().map(Pid::new)
}

/// The pid a process has in its own (innermost) pid namespace: the last
/// field of `NSpid:`. JIT runtimes name their perf map after it. (A number
/// in another namespace, so no [`Pid`] of this one.)
pub(crate) fn ns_pid(status: &str) -> Option<u32> {
    field(status, "NSpid:")?.split_whitespace().last()?.parse().ok()
}

/// `VmRSS` in bytes. Kernel threads have no `VmRSS` line and no resident
/// memory of their own: `Some(0)`.
pub(crate) fn vm_rss(status: &str) -> Option<u64> {
    if !status.lines().any(|l| l.starts_with("Name:")) {
        return None;
    }
    match field(status, "VmRSS:") {
        Some(value) => super::host::parse_kib(value),
        None => Some(0),
    }
}

/// Resident memory of a live process in bytes; kernel threads have none.
pub(crate) fn read_vm_rss(pid: Pid) -> Option<u64> {
    vm_rss(&read(pid).ok()?)
}

/// The effective uid (the second of `Uid:`).
pub(crate) fn euid(status: &str) -> Option<u32> {
    field(status, "Uid:")?.split_whitespace().nth(1)?.parse().ok()
}

/// `CapEff`: the effective capability set.
pub(crate) fn cap_eff(status: &str) -> Option<u64> {
    u64::from_str_radix(field(status, "CapEff:")?.trim(), 16).ok()
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids() {
        let status = "Name:\tnode\nUmask:\t0022\nTgid:\t4242\nUid:\t1000\t0\t0\t0\nNSpid:\t4242\t17\nNgid:\t0\n";
        assert_eq!(ns_pid(status), Some(17));
        assert_eq!(tgid(status), Some(Pid::new(4242)));
        assert_eq!(euid(status), Some(0));
        assert_eq!(cap_eff("Name:\tx\nCapEff:\t000001ffffffffff\n"), Some(0x1ff_ffff_ffff));
        assert_eq!(cap_eff(status), None);
        assert_eq!(ns_pid("Name:\tx\nNSpid:\t99\n"), Some(99));
        assert_eq!(ns_pid("Name:\tx\n"), None);
        assert_eq!(tgid("Name:\tx\n"), None);
    }

    #[test]
    fn vm_rss_in_bytes() {
        let status = "Name:\tredis-server\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  100000 kB\n\
                      VmRSS:\t   20480 kB\nRssAnon:\t   10240 kB\n";
        assert_eq!(vm_rss(status), Some(20480 * 1024));
        // A kernel thread.
        assert_eq!(vm_rss("Name:\tkthreadd\nState:\tS (sleeping)\nTgid:\t2\n"), Some(0));
        assert_eq!(vm_rss(""), None);
        assert_eq!(vm_rss("Name:\tx\nVmRSS:\t lots kB\n"), None);
    }
}
