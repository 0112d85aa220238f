//! What the symbolizer must know about an ELF file before asking anything
//! of it: its build ID (the cache key, and the name of its separate debug
//! file), its `.gnu_debuglink`, whether it carries DWARF or a symbol table,
//! whether it is a Go binary (and where its `.gopclntab` is), and its
//! loadable segments, which turn the file offsets that `/proc/<pid>/maps`
//! gives into the virtual addresses that symbol tables use.
//!
//! Parsing goes through the `object` crate on a memory map, so even a
//! multi-hundred-megabyte binary costs only the pages its headers touch.

use object::{Object as _, ObjectSection as _, ObjectSegment as _, SectionFlags, SegmentFlags};

use crate::addr::{ElfVaddr, FileOffset};

/// A loadable (`PT_LOAD`) segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Link-time virtual address of the segment's first byte.
    pub vaddr: u64,
    /// File offset of that byte.
    pub offset: u64,
    /// Bytes backed by the file (the rest, up to `p_memsz`, is zero-filled).
    pub filesz: u64,
    pub exec: bool,
}

impl Segment {
    fn contains_offset(&self, offset: u64) -> bool {
        self.offset <= offset && offset - self.offset < self.filesz
    }

    fn contains_vaddr(&self, vaddr: u64) -> bool {
        self.vaddr <= vaddr && vaddr - self.vaddr < self.filesz
    }
}

/// Where a Go function table lies in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableLocation {
    pub offset: usize,
    pub len: usize,
    pub vaddr: u64,
}

/// The facts about one ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ElfInfo {
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: the debug file's name and its CRC-32.
    pub debuglink: Option<(String, u32)>,
    /// `.debug_info` (possibly compressed) with contents.
    pub has_dwarf: bool,
    /// A `.symtab` (a stripped file only keeps `.dynsym`).
    pub has_symtab: bool,
    /// The `.gopclntab` section, when the file names one.
    pub gopclntab: Option<TableLocation>,
    /// A Go binary whose table must be found by scanning: it has Go's build
    /// ID note but no table section, or no section headers at all.
    pub maybe_go: bool,
    pub segments: Vec<Segment>,
    /// `[start, end)` link-time addresses of the sections holding code
    /// (`SHF_EXECINSTR`), sorted; empty without section headers.
    pub code_sections: Vec<(u64, u64)>,
}

impl ElfInfo {
    /// Reads the facts of the ELF image `data`; `None` if it is not ELF.
    pub(crate) fn parse(data: &[u8]) -> Option<Self> {
        let file = object::File::parse(data).ok()?;
        if !matches!(file, object::File::Elf32(_) | object::File::Elf64(_)) {
            return None;
        }
        let segments = file
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                let exec =
                    matches!(s.flags(), SegmentFlags::Elf { p_flags, .. } if p_flags.contains(object::elf::PF_X));
                Segment { vaddr: s.address(), offset, filesz, exec }
            })
            .collect();
        let with_contents =
            |name: &str| file.section_by_name(name).is_some_and(|s| s.file_range().is_some_and(|(_, len)| len > 0));
        let gopclntab = [".gopclntab", ".data.rel.ro.gopclntab"].iter().find_map(|name| {
            let section = file.section_by_name(name)?;
            let (offset, len) = section.file_range()?;
            Some(TableLocation {
                offset: usize::try_from(offset).ok()?,
                len: usize::try_from(len).ok()?,
                vaddr: section.address(),
            })
        });
        let mut code_sections: Vec<(u64, u64)> = file
            .sections()
            .filter(|s| {
                matches!(s.flags(), SectionFlags::Elf { sh_flags, .. } if sh_flags.contains(object::elf::SHF_EXECINSTR))
            })
            .filter(|s| s.size() > 0)
            .map(|s| (s.address(), s.address().saturating_add(s.size())))
            .collect();
        code_sections.sort_unstable();
        let section_count = file.sections().count();
        let go_note = file.section_by_name(".note.go.buildid").is_some();
        Some(Self {
            build_id: file.build_id().ok().flatten().map(<[u8]>::to_vec),
            debuglink: file
                .gnu_debuglink()
                .ok()
                .flatten()
                .map(|(name, crc)| (String::from_utf8_lossy(name).into_owned(), crc)),
            has_dwarf: with_contents(".debug_info") || with_contents(".zdebug_info"),
            has_symtab: file.section_by_name(".symtab").is_some(),
            maybe_go: gopclntab.is_none() && (go_note || section_count <= 1),
            gopclntab,
            segments,
            code_sections,
        })
    }

    /// The link-time virtual address of file offset `offset`, through the
    /// loadable segment that maps it.
    pub(crate) fn file_offset_to_vaddr(&self, offset: FileOffset) -> Option<ElfVaddr> {
        let offset = offset.get();
        let seg = self.segments.iter().find(|s| s.contains_offset(offset))?;
        Some(ElfVaddr::new(seg.vaddr + (offset - seg.offset)))
    }

    /// Index of the code section holding link-time address `vaddr`.
    pub(crate) fn code_section_of(&self, vaddr: ElfVaddr) -> Option<usize> {
        let vaddr = vaddr.get();
        let i = self.code_sections.partition_point(|&(start, _)| start <= vaddr).checked_sub(1)?;
        (vaddr < self.code_sections[i].1).then_some(i)
    }

    /// The file offset holding link-time virtual address `vaddr`.
    #[cfg(test)]
    pub(crate) fn vaddr_to_file_offset(&self, vaddr: ElfVaddr) -> Option<FileOffset> {
        vaddr_to_file_offset(&self.segments, vaddr)
    }

    /// Hex build ID, as pprof and `/usr/lib/debug/.build-id` spell it.
    pub(crate) fn build_id_hex(&self) -> Option<String> {
        self.build_id.as_deref().filter(|id| !id.is_empty()).map(hex)
    }
}

/// The file offset holding link-time virtual address `vaddr`.
pub(crate) fn vaddr_to_file_offset(segments: &[Segment], vaddr: ElfVaddr) -> Option<FileOffset> {
    let vaddr = vaddr.get();
    let seg = segments.iter().find(|s| s.contains_vaddr(vaddr))?;
    Some(FileOffset::new(seg.offset + (vaddr - seg.vaddr)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_test_binary() {
        let exe = std::env::current_exe().expect("current_exe");
        let data = std::fs::read(&exe).expect("read test binary");
        let info = ElfInfo::parse(&data).expect("test binary is ELF");
        assert!(info.build_id.is_some(), "rustc links with a build ID");
        assert!(info.segments.iter().any(|s| s.exec));
        assert!(info.gopclntab.is_none() && !info.maybe_go);
        // Round trip through the executable segment.
        let text = info.segments.iter().find(|s| s.exec).expect("text segment");
        let off = FileOffset::new(text.offset + 16);
        let vaddr = info.file_offset_to_vaddr(off).expect("mapped");
        assert_eq!(info.vaddr_to_file_offset(vaddr), Some(off));
        assert_eq!(ElfInfo::parse(b"not an elf file at all"), None);
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x0a, 0xbc, 0xff]), "0abcff");
    }
}
