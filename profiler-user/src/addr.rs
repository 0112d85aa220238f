//! The kinds of code address the symbolizer translates between, as distinct
//! types: a frame's address in its process becomes a file offset through
//! the process's mapping (`procfs::maps::MapsEntry::file_offset`), and a
//! file offset a link-time address through the file's segments
//! (`objfile::elf::ElfInfo::file_offset_to_vaddr`). Mixing them up names
//! the wrong function without any error, so the conversions are the only
//! way from one to the other. A frame's address itself stays a plain `u64`:
//! it is what stacks, profiles and pprof hold.

use std::fmt;

/// An offset into an object file: what `/proc/<pid>/maps` turns a process
/// address into, and what uprobes are attached at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileOffset(u64);

/// A link-time virtual address of an ELF file (`p_vaddr`, `st_value`):
/// what symbol tables, Go's function table and PLT sections are keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ElfVaddr(u64);

impl FileOffset {
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl ElfVaddr {
    pub(crate) const fn new(raw: u64) -> Self {
        Self(raw)
    }

    pub(crate) const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::LowerHex for FileOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for ElfVaddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}
