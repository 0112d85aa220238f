//! A process's name, command line and liveness, and the processes there are.

use std::fs;
use std::path::{Path, PathBuf};

use crate::ids::Pid;

/// The process name: `/proc/<pid>/comm` without its newline.
pub(crate) fn comm(pid: Pid) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_owned())
}

/// `/proc/<pid>/cmdline` with its arguments joined by spaces.
pub(crate) fn command_line(pid: Pid) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<_> = raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(String::from_utf8_lossy).collect();
    Some(args.join(" "))
}

/// Whether `/proc/<pid>` exists: the process (or thread) is alive or a zombie.
pub(crate) fn exists(pid: Pid) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` still runs: it exists and is not a zombie. A
/// process that exited but was not reaped (its parent does not `wait`)
/// keeps its `/proc/<pid>` until reaped, but never runs again.
pub(crate) fn is_running(pid: Pid) -> bool {
    super::stat::read(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// The processes listed in `/proc` now, in listing order; `None` when it
/// cannot be read.
pub(crate) fn all_pids() -> Option<Vec<Pid>> {
    let entries = fs::read_dir("/proc").ok()?;
    Some(entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok().map(Pid::new)).collect())
}

/// `/proc/<pid>/exe`: the process's executable, whatever mount namespace it
/// lives in.
pub(crate) fn exe_path(pid: Pid) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/exe"))
}

/// `/proc/<pid>/root`: the process's root directory, under which paths it
/// sees (a container's) resolve.
pub(crate) fn root(pid: Pid) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root"))
}

/// `path` (absolute, as the process sees it) reached through [`root`].
pub(crate) fn in_root(pid: Pid, path: &Path) -> PathBuf {
    root(pid).join(path.strip_prefix("/").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process() {
        let me = Pid::current();
        assert!(exists(me) && !exists(Pid::new(u32::MAX)));
        assert!(is_running(me) && !is_running(Pid::new(u32::MAX)));
        assert!(comm(me).is_some_and(|c| !c.is_empty() && !c.ends_with('\n')));
        assert!(command_line(me).is_some_and(|c| !c.contains('\0')));
        assert!(all_pids().is_some_and(|pids| pids.contains(&me)));
        assert_eq!(in_root(Pid::new(42), Path::new("/usr/lib/x.so")), PathBuf::from("/proc/42/root/usr/lib/x.so"));
    }
}
