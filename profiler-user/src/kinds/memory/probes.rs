//! Where to put the allocation probes for a target: the C library's `malloc`
//! each process maps, and the Go runtime's allocation slow paths in Go
//! executables (span refills and large allocations).

use std::path::Path;

use profiler_common::{GO_PROBE_ALLOC_LARGE, GO_PROBE_REFILL, PROG_GO_ALLOC, PROG_MALLOC_ENTRY};

use crate::addr::FileOffset;
use crate::bpf::UprobeSite;
use crate::ids::Pid;
use crate::objfile::go::{go_version, past_stack_check, OLD_GO};
use crate::procfs::{maps, process};

pub(crate) const MALLOC_SYMBOL: &str = "malloc";

pub(crate) const GO_REFILL: &str = "runtime.(*mcache).refill";
pub(crate) const GO_ALLOC_LARGE: &str = "runtime.(*mcache).allocLarge";

/// The probe sites of `pids`: `malloc` in each process's libc, and
/// the Go runtime's slow paths in each Go executable.
pub(crate) fn probe_sites(pids: &[Pid]) -> Vec<UprobeSite> {
    let mut sites = Vec::new();
    for &pid in pids {
        let Some(mappings) = maps::read_maps(pid) else { continue };
        if let Some(libc) = maps::find_libc(&mappings) {
            let path = process::in_root(pid, Path::new(&libc.path));
            let program = PROG_MALLOC_ENTRY;
            sites.push(UprobeSite { program, path, symbol: MALLOC_SYMBOL, offset: None, pid, cookie: 0 });
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
                let offset = offset.map(|off| {
                    FileOffset::new(off.get() + past_stack_check(data.get(off.get() as usize..).unwrap_or_default()))
                });
                sites.push(UprobeSite { program: PROG_GO_ALLOC, path: exe.clone(), symbol, offset, pid, cookie });
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
        let sites = probe_sites(&[Pid::current()]);
        assert!(sites.iter().any(|s| s.symbol == MALLOC_SYMBOL), "{sites:?}");
        assert!(!sites.iter().any(|s| s.symbol == GO_REFILL));
    }
}
