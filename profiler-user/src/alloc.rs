//! Where to put the allocation probes for a target: the C library's `malloc`
//! each process maps, and the Go runtime's allocation slow paths in Go
//! executables (span refills and large allocations).

use std::path::{Path, PathBuf};

use profiler_common::{GO_PROBE_ALLOC_LARGE, GO_PROBE_REFILL};

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
/// What [`parse_buildinfo`] reports for the pre-1.18 (pointer) format.
pub const OLD_GO: &str = "go1.17-or-older";

pub const GO_REFILL: &str = "runtime.(*mcache).refill";
pub const GO_ALLOC_LARGE: &str = "runtime.(*mcache).allocLarge";

/// The probe sites of `pids`: `malloc` in each process's libc, and
/// the Go runtime's slow paths in each Go executable.
pub fn probe_sites(pids: &[u32]) -> Vec<ProbeSite> {
    let mut sites = Vec::new();
    for &pid in pids {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { continue };
        if let Some(libc) = find_libc(&maps) {
            sites.push(ProbeSite { path: in_root(pid, &libc), symbol: MALLOC_SYMBOL, pid, cookie: 0, offset: None });
        }
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let Ok(data) = std::fs::read(&exe) else { continue };
        // The probes read the register ABI (Go 1.17+ on amd64); binaries
        // older than the 1.18 build-info format are left alone rather than
        // read garbage from a stack-ABI call.
        if go_version(&data).is_some_and(|v| v != OLD_GO) {
            let offsets = crate::symbolize::function_file_offsets(&data, &[GO_REFILL, GO_ALLOC_LARGE]);
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

/// How far into a Go function its probe goes: past the stack-bound check
/// `CMPQ 0x10(R14), SP` (`49 3b 66 10`) when a `JBE` to `morestack` follows
/// it. The kernel cannot emulate that compare, so a probe on it single-steps
/// it out of line on every hit (a second trap, about 13 µs per hit on this
/// kind of VM); it emulates the conditional jump. Registers, the stack
/// pointer and the return address at `[SP]` are still those of the entry,
/// which is what the probe reads. Any other prologue: the entry itself.
pub fn past_stack_check(code: &[u8]) -> u64 {
    match code {
        [0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, ..] | [0x49, 0x3b, 0x66, 0x10, 0x76, ..] => 4,
        _ => 0,
    }
}

/// The path of the C library in a `/proc/<pid>/maps` text.
pub fn find_libc(maps: &str) -> Option<String> {
    maps.lines().filter_map(|line| line.split_whitespace().nth(5)).find_map(|path| {
        let name = Path::new(path).file_name()?.to_str()?;
        (name == "libc.so.6" || (name.starts_with("libc-") && name.ends_with(".so"))).then(|| path.to_owned())
    })
}

fn in_root(pid: u32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

/// The Go version (`go1.19.8`) recorded in the `.go.buildinfo` of the ELF image `data`, or
/// `None` if it is not a Go binary.
pub fn go_version(data: &[u8]) -> Option<String> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(data).ok()?;
    let section = file.section_by_name(".go.buildinfo")?;
    parse_buildinfo(section.data().ok()?)
}

/// Parses the version out of a `.go.buildinfo` section (Go 1.18+ inline
/// format: a 32-byte header whose flags byte has bit 1 set, then
/// varint-length-prefixed strings, the version first).
pub fn parse_buildinfo(data: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if data.len() < 33 || !data.starts_with(MAGIC) {
        return None;
    }
    let flags = data[15];
    if flags & 2 == 0 {
        // Go ≤ 1.17 stores pointers instead; those releases predate the
        // register ABI change we key on, so call it an old version.
        return Some(OLD_GO.to_owned());
    }
    let mut rest = &data[32..];
    let mut len: usize = 0;
    let mut shift = 0;
    loop {
        let (&b, tail) = rest.split_first()?;
        rest = tail;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    let version = rest.get(..len)?;
    Some(String::from_utf8_lossy(version).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libc_in_maps() {
        let maps = "\
7f00-7f01 r--p 00000000 fd:01 1 /usr/lib/x86_64-linux-gnu/libm.so.6
7f02-7f03 r-xp 00028000 fd:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        assert_eq!(find_libc(maps).as_deref(), Some("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert_eq!(find_libc("7f00-7f01 r-xp 0 fd:01 1 /bin/busybox\n"), None);
    }

    #[test]
    fn parses_inline_buildinfo() {
        let mut data = b"\xff Go buildinf:".to_vec();
        data.push(8);
        data.push(2);
        data.resize(32, 0);
        data.push(8);
        data.extend_from_slice(b"go1.19.8");
        data.push(0);
        assert_eq!(parse_buildinfo(&data).as_deref(), Some("go1.19.8"));
        assert_eq!(parse_buildinfo(b"nope"), None);
    }

    #[test]
    fn probes_go_functions_past_the_stack_check() {
        // CMPQ 0x10(R14), SP; JBE rel32 / JBE rel8.
        assert_eq!(past_stack_check(&[0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x10, 0, 0, 0]), 4);
        assert_eq!(past_stack_check(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x20]), 4);
        // Large frames compare R12 (LEAQ -x(SP), R12 first); other code; too short.
        assert_eq!(past_stack_check(&[0x4c, 0x8d, 0x64, 0x24, 0xf8, 0x4d, 0x3b, 0x66, 0x10]), 0);
        assert_eq!(past_stack_check(&[0x49, 0x3b, 0x66, 0x10, 0x90]), 0);
        assert_eq!(past_stack_check(&[0x49, 0x3b]), 0);
    }

    #[test]
    fn own_process_has_libc_and_is_not_go() {
        let sites = probe_sites(&[std::process::id()]);
        assert!(sites.iter().any(|s| s.symbol == MALLOC_SYMBOL), "{sites:?}");
        assert!(!sites.iter().any(|s| s.symbol == GO_REFILL));
    }
}
