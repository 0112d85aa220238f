//! What stackwatch reads from object files (executables, shared libraries,
//! separate debug files) without running them: ELF layout, build IDs, Go's
//! function table and build info, PLT stubs, and where a binary's debug
//! file is. A leaf: nothing here knows about processes, captures or BPF,
//! so the symbolizer, the allocation probes and the unwinder share it.

pub(crate) mod buildid;
pub(crate) mod debuginfo;
pub(crate) mod elf;
pub(crate) mod facts;
pub(crate) mod go;
pub(crate) mod gopclntab;
pub(crate) mod plt;

use elf::{vaddr_to_file_offset, ElfInfo};

use crate::addr::{ElfVaddr, FileOffset};

/// The file offsets of the entries of the functions `names` in the ELF
/// image `data` (`None` for a name not found): from the symbol table when
/// the file has one (or its dynamic symbols: a shared library's exports),
/// otherwise from the Go function table, which stripped Go binaries keep.
/// For placing uprobes.
pub(crate) fn function_file_offsets(data: &[u8], names: &[&str]) -> Vec<Option<FileOffset>> {
    use object::{Object as _, ObjectSymbol as _};
    let Some(info) = ElfInfo::parse(data) else { return vec![None; names.len()] };
    let mut vaddrs: Vec<Option<ElfVaddr>> = vec![None; names.len()];
    if let Ok(file) = object::File::parse(data) {
        for sym in file.symbols().chain(file.dynamic_symbols()).filter(|s| s.is_definition()) {
            if let Some(i) = sym.name().ok().and_then(|n| names.iter().position(|want| *want == n)) {
                vaddrs[i].get_or_insert(ElfVaddr::new(sym.address()));
            }
        }
    }
    if vaddrs.iter().any(Option::is_none) {
        if let Some(table) = gopclntab::go_table(data, &info) {
            for (vaddr, name) in vaddrs.iter_mut().zip(names) {
                if vaddr.is_none() {
                    *vaddr = table.entry_of(name);
                }
            }
        }
    }
    vaddrs.into_iter().map(|v| v.and_then(|v| vaddr_to_file_offset(&info.segments, v))).collect()
}
