//! Where to put the allocation probes for a target: the C library's
//! `malloc`, `calloc` and `realloc` (entry and return) and `free` in each
//! process's libc, and the Go runtime's allocation slow paths in Go
//! executables (span refills and large allocations).

use std::path::Path;

use profiler_common::{
    GO_PROBE_ALLOC_LARGE, GO_PROBE_REFILL, PROG_ALLOC_RETURN, PROG_CALLOC_ENTRY, PROG_FREE_ENTRY, PROG_GO_ALLOC,
    PROG_MALLOC_ENTRY, PROG_REALLOC_ENTRY,
};

use crate::addr::FileOffset;
use crate::bpf::UprobeSite;
use crate::ids::Pid;
use crate::objfile::go::{go_version, past_stack_check, OLD_GO};
use crate::procfs::{maps, process};

pub(crate) const MALLOC_SYMBOL: &str = "malloc";

pub(crate) const FREE_SYMBOL: &str = "free";

/// The C library's probes: (program, symbol). Each allocator's return is
/// probed too, for the address the in-use view follows until `free`.
const LIBC_PROBES: [(&str, &str); 7] = [
    (PROG_MALLOC_ENTRY, MALLOC_SYMBOL),
    (PROG_ALLOC_RETURN, MALLOC_SYMBOL),
    (PROG_CALLOC_ENTRY, "calloc"),
    (PROG_ALLOC_RETURN, "calloc"),
    (PROG_REALLOC_ENTRY, "realloc"),
    (PROG_ALLOC_RETURN, "realloc"),
    (PROG_FREE_ENTRY, FREE_SYMBOL),
];

/// Processes with more threads than this get no in-use probes (`free`,
/// the allocators' returns): measured with 2000 threads allocating, the
/// seven probes took 95 s to detach (the kernel removes each breakpoint
/// under the process's memory-map lock, which the trapping threads keep
/// taking), against seconds for the entry probes alone.
pub(crate) const MAX_INUSE_THREADS: u64 = 256;

/// Whether `program` serves only the in-use view.
fn is_inuse_probe(program: &str) -> bool {
    program == PROG_ALLOC_RETURN || program == PROG_FREE_ENTRY
}

/// Where in `free` to probe, past a leading `test %rdi,%rdi; je …`
/// (glibc's `free(NULL)` check): 0 when the function starts otherwise.
///
/// A uprobe on an instruction the kernel cannot emulate (x86 emulates
/// pushes, jumps and calls; `test` is not one) is single-stepped out of
/// line, two traps per call; on a VM each debug trap is a VM exit, and
/// glibc's `free` measured 120 µs per call that way, 8 k frees/s instead of
/// millions. The instruction after the check is a `push`, reached by every
/// non-NULL pointer with it still in RDI, which is all the probe wants.
pub(crate) fn past_null_check(code: &[u8]) -> u64 {
    match code {
        [0x48, 0x85, 0xff, 0x0f, 0x84, ..] => 9,
        [0x48, 0x85, 0xff, 0x74, ..] => 5,
        _ => 0,
    }
}

/// The file offset to probe `free` at in the library `path` (see
/// [`past_null_check`]); `None` to probe the symbol itself.
fn free_probe_offset(path: &Path) -> Option<FileOffset> {
    let data = std::fs::read(path).ok()?;
    let entry = crate::objfile::function_file_offsets(&data, &[FREE_SYMBOL]).into_iter().next()??;
    let code = data.get(entry.get() as usize..)?;
    Some(FileOffset::new(entry.get() + past_null_check(code)))
}

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
            let free_offset = free_probe_offset(&path);
            let threads = crate::procfs::stat::read(pid).map_or(0, |s| s.threads);
            let inuse = threads <= MAX_INUSE_THREADS;
            if !inuse {
                tracing::info!(
                    "pid {pid} has {threads} threads: its in-use view is off (the return and `free` probes would \
                     keep its threads trapping and take minutes to detach); allocations are still sampled"
                );
            }
            for (program, symbol) in LIBC_PROBES.into_iter().filter(|&(program, _)| inuse || !is_inuse_probe(program)) {
                let offset = if symbol == FREE_SYMBOL { free_offset } else { None };
                sites.push(UprobeSite { program, path: path.clone(), symbol, offset, pid, cookie: 0 });
            }
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
        for (program, symbol) in LIBC_PROBES {
            assert!(sites.iter().any(|s| s.program == program && s.symbol == symbol), "{program} {symbol}: {sites:?}");
        }
        assert!(!sites.iter().any(|s| s.symbol == GO_REFILL));
    }

    #[test]
    fn free_is_probed_past_its_null_check() {
        // glibc 2.36's `free`: test %rdi,%rdi; je +0xbf; push %rbp.
        assert_eq!(past_null_check(&[0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0, 0, 0, 0x55]), 9);
        assert_eq!(past_null_check(&[0x48, 0x85, 0xff, 0x74, 0x20, 0x55]), 5);
        // Anything else: the entry.
        assert_eq!(past_null_check(&[0xf3, 0x0f, 0x1e, 0xfa]), 0);
        assert_eq!(past_null_check(&[0x48, 0x85]), 0);
        // This host's libc: the offset found lies inside `free`, on a whole
        // instruction the check above recognized or at its entry.
        let sites = probe_sites(&[Pid::current()]);
        let free = sites.iter().find(|s| s.symbol == FREE_SYMBOL).expect("a free probe");
        let offset = free.offset.expect("free's offset in libc").get();
        let data = std::fs::read(&free.path).expect("libc");
        let entry = crate::objfile::function_file_offsets(&data, &[FREE_SYMBOL])[0].expect("free in libc").get();
        assert!(offset == entry || offset == entry + past_null_check(&data[entry as usize..]), "{offset} {entry}");
    }
}
