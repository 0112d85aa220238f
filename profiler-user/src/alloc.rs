//! Where to put the allocation probes for a target: the C library's `malloc`
//! each process maps, and the Go runtime's allocation slow paths in Go
//! executables (span refills and large allocations).

use std::path::{Path, PathBuf};

use profiler_common::{GO_PROBE_ALLOC_LARGE, GO_PROBE_REFILL};

use crate::objfile::go::{go_version, past_stack_check, OLD_GO};
use crate::procfs::{maps, process};

/// One uprobe to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSite {
    /// File to probe, as reachable from here (through `/proc/<pid>/root` so
    /// binaries in containers resolve).
    pub path: PathBuf,
    /// Symbol to attach to.
    pub symbol: &'static str,
    /// Process the probe is limited to.
    pub pid: u32,
    /// Attach cookie (which Go slow path).
    pub cookie: u64,
    /// Where in the file to attach: `None` for the symbol's entry (found by
    /// the kernel's loader from the dynamic symbols), or a file offset
    /// computed here.
    pub offset: Option<u64>,
}

pub const MALLOC_SYMBOL: &str = "malloc";

pub const GO_REFILL: &str = "runtime.(*mcache).refill";
pub const GO_ALLOC_LARGE: &str = "runtime.(*mcache).allocLarge";

/// The probe sites of `pids`: `malloc` in each process's libc, and
/// the Go runtime's slow paths in each Go executable.
pub fn probe_sites(pids: &[u32]) -> Vec<ProbeSite> {
    let mut sites = Vec::new();
    for &pid in pids {
        let Some(mappings) = maps::read_maps(pid) else { continue };
        if let Some(libc) = maps::find_libc(&mappings) {
            let path = process::in_root(pid, Path::new(&libc.path));
            sites.push(ProbeSite { path, symbol: MALLOC_SYMBOL, pid, cookie: 0, offset: None });
        }
        let exe = process::exe_path(pid);
        let Ok(data) = std::fs::read(&exe) else { continue };
        // The probes read the register ABI (Go 1.17+ on amd64); binaries
        // older than the 1.18 build-info format are left alone rather than
        // read garbage from a stack-ABI call.
        if go_version(&data).is_some_and(|v| v != OLD_GO) {
            let offsets = crate::objfile::function_file_offsets(&data, &[GO_REFILL, GO_ALLOC_LARGE]);
            for ((symbol, cookie), offset) in
                [(GO_REFILL, GO_PROBE_REFILL), (GO_ALLOC_LARGE, GO_PROBE_ALLOC_LARGE)].into_iter().zip(offsets)
            {
                // Not found (a runtime that renamed them): the attach by
                // symbol fails with a warning naming the function.
                let offset = offset.map(|off| off + past_stack_check(data.get(off as usize..).unwrap_or_default()));
                sites.push(ProbeSite { path: exe.clone(), symbol, pid, cookie, offset });
            }
        }
    }
    sites
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_libc_and_is_not_go() {
        let sites = probe_sites(&[std::process::id()]);
        assert!(sites.iter().any(|s| s.symbol == MALLOC_SYMBOL), "{sites:?}");
        assert!(!sites.iter().any(|s| s.symbol == GO_REFILL));
    }
}
