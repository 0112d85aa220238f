//! Facts about Go executables that do not need the function table: the
//! toolchain version recorded in `.go.buildinfo`, and where in a runtime
//! function a probe can go without a trap it cannot afford.

/// What [`parse_buildinfo`] reports for the pre-1.18 (pointer) format.
pub(crate) const OLD_GO: &str = "go1.17-or-older";

/// How far into a Go function its probe goes: past the stack-bound check
/// `CMPQ 0x10(R14), SP` (`49 3b 66 10`) when a `JBE` to `morestack` follows
/// it. The kernel cannot emulate that compare, so a probe on it single-steps
/// it out of line on every hit (a second trap, about 13 µs per hit on this
/// kind of VM); it emulates the conditional jump. Registers, the stack
/// pointer and the return address at `[SP]` are still those of the entry,
/// which is what the probe reads. Any other prologue: the entry itself.
pub(crate) fn past_stack_check(code: &[u8]) -> u64 {
    match code {
        [0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, ..] | [0x49, 0x3b, 0x66, 0x10, 0x76, ..] => 4,
        _ => 0,
    }
}

/// The Go version (`go1.19.8`) recorded in the `.go.buildinfo` of the ELF image `data`, or
/// `None` if it is not a Go binary.
pub(crate) fn go_version(data: &[u8]) -> Option<String> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(data).ok()?;
    let section = file.section_by_name(".go.buildinfo")?;
    parse_buildinfo(section.data().ok()?)
}

/// Parses the version out of a `.go.buildinfo` section (Go 1.18+ inline
/// format: a 32-byte header whose flags byte has bit 1 set, then
/// varint-length-prefixed strings, the version first).
pub(crate) fn parse_buildinfo(data: &[u8]) -> Option<String> {
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
    fn go_allocation_probe_sites_are_found_with_and_without_symbols() {
        // The allocation slow paths the memory profile probes.
        let want = ["runtime.(*mcache).refill", "runtime.(*mcache).allocLarge"];
        let mut found = Vec::new();
        for flags in [&[][..], &["-ldflags=-s -w"][..]] {
            let Some((_dir, prog)) =
                crate::objfile::gopclntab::tests::build_go(crate::objfile::gopclntab::tests::INLINE_GO, flags)
            else {
                return;
            };
            let data = std::fs::read(&prog).expect("read");
            let offsets = crate::objfile::function_file_offsets(&data, &want);
            for (name, off) in want.iter().zip(&offsets) {
                let off = off.unwrap_or_else(|| panic!("{name} not found ({flags:?})")).get() as usize;
                // Go 1.17+ on amd64: the stack check, then its JBE: the probe goes past it.
                assert_eq!(&data[off..off + 4], [0x49, 0x3b, 0x66, 0x10], "{name} prologue ({flags:?})");
                assert_eq!(past_stack_check(&data[off..]), 4, "{name} ({flags:?})");
            }
            found.push(offsets);
        }
        // The symbol table and the Go function table agree.
        assert_eq!(found[0], found[1]);
        assert_eq!(crate::objfile::function_file_offsets(b"not an ELF file", &want), vec![None, None]);
    }
}
