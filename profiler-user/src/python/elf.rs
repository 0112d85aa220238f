//! What the Python reader needs from the interpreter's ELF file: the
//! symbols it starts from (`_PyRuntime`, `PyCode_Type`, `Py_Version`),
//! the address range of `_PyEval_EvalFrameDefault` and of its `.cold`
//! part, and the load segments (to turn file addresses into the process's).
//!
//! GCC moves the rarely taken paths of the interpreter loop into a separate
//! function, `_PyEval_EvalFrameDefault.cold`, placed elsewhere in `.text`.
//! A sample can stop there, so it counts as part of the eval loop. The
//! symbol is local (in `.symtab`, which distributions strip) and its
//! symbol size is unreliable, so the range comes from `.eh_frame`: the cold
//! part is the one unwind entry (FDE) outside the function that its
//! branches land in.

use std::ops::Range;

use anyhow::{Context as _, Result};
use object::{Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _};

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
}

/// Python facts of one ELF file; addresses are file addresses (add the
/// load bias for the process's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PyElf {
    pub runtime: Option<u64>,
    pub eval: Option<Range<u64>>,
    pub cold: Option<Range<u64>>,
    /// `PY_VERSION_HEX` from the `Py_Version` constant (3.11+).
    pub py_version: Option<u32>,
    pub code_type: Option<u64>,
    pub frame_type: Option<u64>,
    pub unicode_type: Option<u64>,
    pub bytes_type: Option<u64>,
    /// `(major, minor)` of a `PY_VERSION` string found in `.rodata`, when
    /// exactly one minor version is named there.
    pub rodata_version: Option<(u8, u8)>,
    /// The file is linked against a `libpython` (a shared build's
    /// executable: the interpreter is in the library, maybe not loaded yet).
    pub needs_libpython: bool,
    pub segments: Vec<Segment>,
}

impl PyElf {
    /// Parses `data` (a whole ELF file).
    pub(super) fn parse(data: &[u8]) -> Result<Self> {
        let file = object::File::parse(data).context("not an ELF file")?;
        let mut elf = PyElf::default();
        let mut cold_symbol = None;
        // .symtab first (it has the local `.cold` symbol), then .dynsym.
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            let Ok(name) = sym.name() else { continue };
            let addr = sym.address();
            if addr == 0 {
                continue;
            }
            match name {
                "_PyRuntime" => elf.runtime = elf.runtime.or(Some(addr)),
                "_PyEval_EvalFrameDefault" if sym.size() > 0 => {
                    elf.eval = elf.eval.clone().or(Some(addr..addr + sym.size()));
                }
                "_PyEval_EvalFrameDefault.cold" => cold_symbol = cold_symbol.or(Some(addr)),
                "PyCode_Type" => elf.code_type = elf.code_type.or(Some(addr)),
                "PyFrame_Type" => elf.frame_type = elf.frame_type.or(Some(addr)),
                "PyUnicode_Type" => elf.unicode_type = elf.unicode_type.or(Some(addr)),
                "PyBytes_Type" => elf.bytes_type = elf.bytes_type.or(Some(addr)),
                "Py_Version" if elf.py_version.is_none() => elf.py_version = read_u32_at(&file, addr),
                _ => {}
            }
        }
        for seg in file.segments() {
            let (offset, filesz) = seg.file_range();
            elf.segments.push(Segment { vaddr: seg.address(), offset, filesz });
        }
        // DT_NEEDED names live in .dynstr; nothing else there says "libpython".
        elf.needs_libpython = file
            .section_by_name(".dynstr")
            .and_then(|s| s.data().ok())
            .is_some_and(|d| d.windows(9).any(|w| w == b"libpython"));
        if elf.runtime.is_some() {
            if elf.py_version.is_none() {
                elf.rodata_version = rodata_version(&file);
            }
            if let Some(eval) = elf.eval.clone() {
                elf.cold = cold_range(&file, eval, cold_symbol);
            }
        }
        Ok(elf)
    }

    /// The load bias of this file in a process that maps file offset
    /// `offset` at address `start`.
    pub(super) fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        let seg = self.segments.iter().find(|s| s.offset <= offset && offset < s.offset + s.filesz.max(1))?;
        Some(start.wrapping_sub(seg.vaddr + (offset - seg.offset)))
    }
}

/// Whether `data`'s `.dynstr` contains `_PyRuntime`: a cheap test before
/// a full parse of an executable that may embed CPython.
pub(super) fn mentions_runtime(data: &[u8]) -> bool {
    let Ok(file) = object::File::parse(data) else { return false };
    file.section_by_name(".dynstr")
        .and_then(|s| s.data().ok())
        .is_some_and(|d| d.windows(b"_PyRuntime\0".len()).any(|w| w == b"_PyRuntime\0"))
}

fn read_u32_at(file: &object::File<'_>, addr: u64) -> Option<u32> {
    file.sections().find_map(|s| {
        let bytes = s.data_range(addr, 4).ok()??;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    })
}

/// `PY_VERSION` is a string such as `3.9.18` in `.rodata` (it feeds
/// `Py_GetVersion`); other version-like strings may be there too, so this
/// only answers when all of them agree on the minor version.
fn rodata_version(file: &object::File<'_>) -> Option<(u8, u8)> {
    let data = file.section_by_name(".rodata")?.data().ok()?;
    let mut found: Option<(u8, u8)> = None;
    for s in data.split(|&b| b == 0) {
        let Some(version) = parse_py_version(s) else { continue };
        match found {
            None => found = Some(version),
            Some(v) if v == version => {}
            Some(_) => return None,
        }
    }
    found
}

/// `3.X.Y` optionally followed by a release tag (`a1`, `b2`, `rc1`, `+`).
fn parse_py_version(s: &[u8]) -> Option<(u8, u8)> {
    let s = std::str::from_utf8(s).ok()?;
    let mut parts = s.splitn(3, '.');
    let major: u8 = parts.next()?.parse().ok()?;
    let minor = parts.next()?;
    let micro = parts.next()?;
    if major != 3 || minor.is_empty() || minor.len() > 2 || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = micro.bytes().take_while(u8::is_ascii_digit).count();
    let tag = &micro[digits..];
    let tag_ok = tag.is_empty()
        || tag == "+"
        || ["a", "b", "rc"].iter().any(|t| {
            tag.strip_prefix(t)
                .is_some_and(|n| !n.is_empty() && n.trim_end_matches('+').bytes().all(|b| b.is_ascii_digit()))
        });
    if digits == 0 || digits > 2 || !tag_ok {
        return None;
    }
    Some((3, minor.parse().ok()?))
}

/// The `.cold` part's range: the FDE containing the `.cold` symbol when
/// `.symtab` has it, else the FDE outside `eval` that most of `eval`'s
/// rel32 branches (`jmp`, `jcc`) land in. The scan reads raw bytes, not
/// decoded instructions, so some "branches" are noise; noise scatters over
/// the whole text while the real branches pile into one FDE, so the winner
/// must stand out (≥ 3 hits and 3× the runner-up) or there is no cold part.
fn cold_range(file: &object::File<'_>, eval: Range<u64>, cold_symbol: Option<u64>) -> Option<Range<u64>> {
    let fdes = fde_ranges(file)?;
    let containing = |addr: u64| {
        let i = fdes.partition_point(|r| r.start <= addr);
        i.checked_sub(1).map(|i| &fdes[i]).filter(|r| r.contains(&addr) && !overlaps(r, &eval))
    };
    if let Some(addr) = cold_symbol {
        return containing(addr).cloned();
    }
    let code = function_bytes(file, &eval)?;
    let mut hits: std::collections::HashMap<u64, (Range<u64>, u32)> = std::collections::HashMap::new();
    for (i, &b) in code.iter().enumerate() {
        let (len, rel_at) = match (b, code.get(i + 1)) {
            (0xe9, _) => (5, i + 1),
            (0x0f, Some(0x80..=0x8f)) => (6, i + 2),
            _ => continue,
        };
        let Some(rel) = code.get(rel_at..rel_at + 4) else { continue };
        let rel = i32::from_le_bytes([rel[0], rel[1], rel[2], rel[3]]);
        let target = (eval.start + (i + len) as u64).wrapping_add_signed(i64::from(rel));
        if eval.contains(&target) {
            continue;
        }
        if let Some(range) = containing(target) {
            hits.entry(range.start).or_insert_with(|| (range.clone(), 0)).1 += 1;
        }
    }
    let mut ranked: Vec<(Range<u64>, u32)> = hits.into_values().collect();
    ranked.sort_by_key(|(r, n)| (std::cmp::Reverse(*n), r.start));
    let (best, n) = ranked.first()?.clone();
    let runner_up = ranked.get(1).map_or(0, |(_, n)| *n);
    (n >= 3 && n >= 3 * runner_up).then_some(best)
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn function_bytes<'d>(file: &object::File<'d>, range: &Range<u64>) -> Option<&'d [u8]> {
    file.sections().find_map(|s| s.data_range(range.start, range.end - range.start).ok().flatten())
}

/// Every FDE's address range, sorted.
fn fde_ranges(file: &object::File<'_>) -> Option<Vec<Range<u64>>> {
    use gimli::UnwindSection as _;
    let section = file.section_by_name(".eh_frame")?;
    let eh_frame = gimli::EhFrame::new(section.data().ok()?, gimli::LittleEndian);
    let mut bases = gimli::BaseAddresses::default().set_eh_frame(section.address());
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    if let Some(got) = file.section_by_name(".got") {
        bases = bases.set_got(got.address());
    }
    let mut ranges = Vec::new();
    let mut entries = eh_frame.entries(&bases);
    while let Ok(Some(entry)) = entries.next() {
        if let gimli::CieOrFde::Fde(partial) = entry {
            if let Ok(fde) = partial.parse(gimli::EhFrame::cie_from_offset) {
                if fde.len() > 0 {
                    ranges.push(fde.initial_address()..fde.initial_address() + fde.len());
                }
            }
        }
    }
    ranges.sort_by_key(|r| r.start);
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_py_version_strings() {
        assert_eq!(parse_py_version(b"3.9.18"), Some((3, 9)));
        assert_eq!(parse_py_version(b"3.13.0rc2"), Some((3, 13)));
        assert_eq!(parse_py_version(b"3.12.0a7+"), Some((3, 12)));
        assert_eq!(parse_py_version(b"3.11.2+"), Some((3, 11)));
        for bad in [&b"3.9"[..], b"2.7.18", b"3.9.x", b"3.9.1 (main)", b"3.123.1", b"3..1", b"3.9.1rc"] {
            assert_eq!(parse_py_version(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bias_maps_offsets_through_segments() {
        let elf = PyElf {
            segments: vec![
                Segment { vaddr: 0, offset: 0, filesz: 0x1000 },
                Segment { vaddr: 0x2000, offset: 0x1000, filesz: 0x3000 },
            ],
            ..PyElf::default()
        };
        assert_eq!(elf.bias(0x7f00_0000_0000, 0), Some(0x7f00_0000_0000));
        assert_eq!(elf.bias(0x7f00_0000_2000, 0x1000), Some(0x7f00_0000_0000));
        assert_eq!(elf.bias(0x7f00_0000_3000, 0x2000), Some(0x7f00_0000_0000));
        assert_eq!(elf.bias(0x7f00_0000_9000, 0x9000), None);
    }
}
