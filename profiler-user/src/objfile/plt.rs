//! Names for the PLT stubs of an ELF file: `strlen@plt`.
//!
//! A call into another library (and, in a shared library, a call to one of
//! its own exported functions) goes through a small stub in `.plt`,
//! `.plt.sec` or `.plt.got`. No symbol covers those sections, so a lookup of
//! the nearest preceding symbol names every stub after what happens to come
//! before them, usually the sizeless `_init` at the end of `.init`: 7 % of a
//! Python process's CPU once read `_init`. Instead, as objdump does, each
//! stub is decoded to the GOT slot it jumps through, and the dynamic
//! relocation that fills that slot (`.rela.plt`, `.rela.dyn`) names the
//! callee. With IBT (`.plt.sec`) the lazy `.plt` entries push their
//! `.rela.plt` index instead, which names them. A slot filled by an
//! `IRELATIVE` relocation (an ifunc called from its own library, as in libc)
//! is named after the ifunc whose resolver the relocation calls.
//!
//! Decoded: x86-64 and AArch64. Elsewhere, and for stubs that name nothing
//! (the resolver trampoline `PLT0`), an address in a PLT section stays
//! unnamed (`libfoo.so+0x…`), never the neighbouring symbol's.

use std::collections::{HashMap, HashSet};

use object::elf;
use object::read::elf::{ElfFile, FileHeader, Rel as _, Rela as _, SectionHeader as _, Sym as _};
use object::read::StringTable;
use object::Endianness;

use crate::addr::ElfVaddr;

/// Sections holding PLT stubs (`.plt.bnd` is `.plt.sec`'s name from the MPX days).
const PLT_SECTIONS: &[&str] = &[".plt", ".plt.sec", ".plt.bnd", ".plt.got", ".iplt"];

/// What [`PltStubs::lookup`] found at an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PltLookup<'a> {
    /// Not in a PLT section: ask the symbol tables.
    NotPlt,
    /// A stub, with its `callee@plt` name.
    Stub(&'a str),
    /// In a PLT section, but no stub there is known.
    Unnamed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Stub {
    start: u64,
    end: u64,
    name: Box<str>,
}

/// The PLT sections and named stubs of one file, by link-time address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PltStubs {
    /// `[start, end)` of each PLT section, sorted.
    sections: Vec<(u64, u64)>,
    /// Sorted by start, not overlapping.
    stubs: Vec<Stub>,
}

impl PltStubs {
    /// Reads the PLT of the ELF image `data`; `None` if it is not ELF or has
    /// no PLT section.
    pub(crate) fn parse(data: &[u8]) -> Option<Self> {
        let stubs = match object::File::parse(data).ok()? {
            object::File::Elf32(file) => parse_elf(&file),
            object::File::Elf64(file) => parse_elf(&file),
            _ => return None,
        };
        (!stubs.sections.is_empty()).then_some(stubs)
    }

    pub(crate) fn lookup(&self, vaddr: ElfVaddr) -> PltLookup<'_> {
        let vaddr = vaddr.get();
        let in_section = |&(start, end): &(u64, u64)| start <= vaddr && vaddr < end;
        let i = self.sections.partition_point(|&(start, _)| start <= vaddr);
        if !i.checked_sub(1).and_then(|i| self.sections.get(i)).is_some_and(in_section) {
            return PltLookup::NotPlt;
        }
        let i = self.stubs.partition_point(|s| s.start <= vaddr);
        match i.checked_sub(1).and_then(|i| self.stubs.get(i)) {
            Some(stub) if vaddr < stub.end => PltLookup::Stub(&stub.name),
            _ => PltLookup::Unnamed,
        }
    }

    /// Named stubs.
    pub(crate) fn len(&self) -> usize {
        self.stubs.len()
    }

    /// Every named stub as `(start, end, name)`.
    #[cfg(test)]
    pub(crate) fn stubs(&self) -> impl Iterator<Item = (u64, u64, &str)> {
        self.stubs.iter().map(|s| (s.start, s.end, &*s.name))
    }
}

/// Where a stub jumps, before relocations turn it into a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Through this GOT slot (link-time address).
    Slot(u64),
    /// Lazy IBT entry: through the slot of this `.rela.plt` entry.
    JmpRel(u32),
}

fn parse_elf<Elf: FileHeader<Endian = Endianness>>(file: &ElfFile<'_, Elf>) -> PltStubs {
    let endian = file.endian();
    let data = file.data();
    let machine = file.elf_header().e_machine(endian);
    let table = file.elf_section_table();
    let mut out = PltStubs::default();
    let mut found: Vec<(u64, u64, Target)> = Vec::new();
    for header in table.iter() {
        let Ok(name) = table.section_name(endian, header) else { continue };
        if !PLT_SECTIONS.iter().any(|p| p.as_bytes() == name) || header.sh_type(endian) == elf::SHT_NOBITS {
            continue;
        }
        let (addr, size) = (header.sh_addr(endian).into(), header.sh_size(endian).into());
        if size == 0 {
            continue;
        }
        out.sections.push((addr, addr.saturating_add(size)));
        let Ok(bytes) = header.data(endian, data) else { continue };
        match machine {
            elf::EM_X86_64 => {
                let entsize = match header.sh_entsize(endian).into() {
                    n @ (8 | 16) => n as usize,
                    _ => 16,
                };
                for (i, entry) in bytes.chunks(entsize).enumerate() {
                    let start = addr + (i * entsize) as u64;
                    if let Some(target) = x86_64_stub(entry, start) {
                        found.push((start, start + entry.len() as u64, target));
                    }
                }
            }
            elf::EM_AARCH64 => found.extend(aarch64_stubs(bytes, addr)),
            _ => {}
        }
    }
    out.sections.sort_unstable();
    if found.is_empty() {
        return out;
    }
    let wanted: HashSet<u64> = found
        .iter()
        .filter_map(|&(_, _, t)| match t {
            Target::Slot(slot) => Some(slot),
            Target::JmpRel(_) => None,
        })
        .collect();
    let relocs = Relocations::read(file, machine, &wanted);
    for (start, end, target) in found {
        let slot = match target {
            Target::Slot(slot) => Some(slot),
            Target::JmpRel(index) => relocs.jmprel.get(index as usize).copied(),
        };
        if let Some(name) = slot.and_then(|s| relocs.by_slot.get(&s)) {
            out.stubs.push(Stub { start, end, name: format!("{name}@plt").into() });
        }
    }
    out.stubs.sort_unstable_by_key(|s| s.start);
    out
}

/// x86-64 stub at `vaddr`: `[endbr64] [bnd] jmp *disp32(%rip)` (`.plt`,
/// `.plt.sec`, `.plt.got`) or `endbr64; push $index` (lazy `.plt` entry
/// under IBT). PLT0 (`push GOT+8(%rip)`) decodes to nothing.
fn x86_64_stub(entry: &[u8], vaddr: u64) -> Option<Target> {
    const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
    let mut i = if entry.starts_with(&ENDBR64) { ENDBR64.len() } else { 0 };
    if entry.get(i) == Some(&0xf2) {
        i += 1;
    }
    let imm32 = |at: usize| entry.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
    match entry.get(i..i + 2)? {
        [0xff, 0x25] => {
            let disp = i32::from_le_bytes(imm32(i + 2)?);
            let next = vaddr.wrapping_add(i as u64 + 6);
            Some(Target::Slot(next.wrapping_add_signed(i64::from(disp))))
        }
        [0x68, _] if i > 0 => Some(Target::JmpRel(u32::from_le_bytes(imm32(i + 1)?))),
        _ => None,
    }
}

/// AArch64 stubs in a PLT section at `vaddr`: `[bti c] adrp x16, PAGE;
/// ldr x17, [x16, #OFF]; add x16, x16, #OFF; br x17`, each reaching to the
/// next stub. PLT0's pair points at the resolver's slot, which no relocation
/// fills.
fn aarch64_stubs(bytes: &[u8], vaddr: u64) -> Vec<(u64, u64, Target)> {
    const BTI_C: u32 = 0xd503_245f;
    let insns: Vec<u32> = bytes.as_chunks::<4>().0.iter().map(|&b| u32::from_le_bytes(b)).collect();
    let mut starts: Vec<(u64, u64)> = Vec::new();
    for (i, pair) in insns.windows(2).enumerate() {
        let (adrp, ldr) = (pair[0], pair[1]);
        // adrp x16 / ldr x17, [x16, #imm] (64-bit, unsigned offset).
        if adrp & 0x9f00_001f != 0x9000_0010 || ldr & 0xffc0_03ff != 0xf940_0211 {
            continue;
        }
        let pc = vaddr + 4 * i as u64;
        let imm = ((u64::from(adrp >> 5) & 0x7_ffff) << 2) | (u64::from(adrp >> 29) & 3);
        // Sign-extend the 21-bit page count.
        let pages = ((imm << 43) as i64) >> 43;
        let page = (pc & !0xfff).wrapping_add_signed(pages << 12);
        let slot = page.wrapping_add(u64::from((ldr >> 10) & 0xfff) * 8);
        let start = if i > 0 && insns[i - 1] == BTI_C { pc - 4 } else { pc };
        starts.push((start, slot));
    }
    let end = vaddr + bytes.len() as u64;
    starts
        .iter()
        .enumerate()
        .map(|(k, &(start, slot))| {
            let next = starts.get(k + 1).map_or(end, |&(s, _)| s);
            (start, next, Target::Slot(slot))
        })
        .collect()
}

/// The dynamic relocations, as GOT slot → callee.
struct Relocations {
    by_slot: HashMap<u64, String>,
    /// Slots of `.rela.plt` (`DT_JMPREL`) in order.
    jmprel: Vec<u64>,
}

impl Relocations {
    /// Reads the relocations of the GOT slots in `wanted` and of `.rela.plt`
    /// (a big binary has hundreds of thousands of others, all skipped).
    fn read<Elf: FileHeader<Endian = Endianness>>(
        file: &ElfFile<'_, Elf>,
        machine: elf::Machine,
        wanted: &HashSet<u64>,
    ) -> Self {
        let endian = file.endian();
        let data = file.data();
        let table = file.elf_section_table();
        let is_mips64el = file.elf_header().is_mips64el(endian);
        let irelative = match machine {
            elf::EM_X86_64 => Some(elf::R_X86_64_IRELATIVE),
            elf::EM_AARCH64 => Some(elf::R_AARCH64_IRELATIVE),
            _ => None,
        };
        let mut by_slot = HashMap::new();
        let mut jmprel = Vec::new();
        // Ifunc slots wait for the resolver's name: resolver address → slots.
        let mut resolvers: HashMap<u64, Vec<u64>> = HashMap::new();
        for header in table.iter() {
            // Dynamic relocations are loaded; a static `.rela.text` is not.
            if !header.sh_flags(endian).contains(elf::SHF_ALLOC) {
                continue;
            }
            let is_jmprel = table.section_name(endian, header).is_ok_and(|n| n == b".rela.plt" || n == b".rel.plt");
            let symbols = match header.link(endian) {
                link if link.0 == 0 => None,
                link => table.symbol_table_by_index(endian, data, link).ok(),
            };
            let mut entry = |slot: u64, r_type: elf::RelocationType, sym: u32, addend: i64| {
                if is_jmprel {
                    jmprel.push(slot);
                } else if !wanted.contains(&slot) {
                    return;
                }
                if sym != 0 {
                    let name = symbols.as_ref().and_then(|s| {
                        let symbol = s.symbol(object::SymbolIndex(sym as usize)).ok()?;
                        symbol_name(symbol, endian, s.strings())
                    });
                    if let Some(name) = name {
                        by_slot.insert(slot, name);
                    }
                } else if Some(r_type) == irelative {
                    if let Ok(resolver) = u64::try_from(addend) {
                        resolvers.entry(resolver).or_default().push(slot);
                    }
                }
            };
            if let Ok(Some((relas, _))) = header.rela(endian, data) {
                for r in relas {
                    let (offset, addend) = (r.r_offset(endian).into(), r.r_addend(endian).into());
                    entry(offset, r.r_type(endian, is_mips64el), r.r_sym(endian, is_mips64el), addend);
                }
            } else if let Ok(Some((rels, _))) = header.rel(endian, data) {
                for r in rels {
                    entry(r.r_offset(endian).into(), r.r_type(endian), r.r_sym(endian), 0);
                }
            }
        }
        if !resolvers.is_empty() {
            name_ifunc_slots(file, resolvers, &mut by_slot);
        }
        Self { by_slot, jmprel }
    }
}

/// Names the slots of `resolvers` after the ifunc symbols (`STT_GNU_IFUNC`,
/// whose value is the resolver) of `.dynsym`, else `.symtab`.
fn name_ifunc_slots<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_, Elf>,
    mut resolvers: HashMap<u64, Vec<u64>>,
    by_slot: &mut HashMap<u64, String>,
) {
    let endian = file.endian();
    let data = file.data();
    let table = file.elf_section_table();
    for sh_type in [elf::SHT_DYNSYM, elf::SHT_SYMTAB] {
        let Ok(symbols) = table.symbols(endian, data, sh_type) else { continue };
        for symbol in symbols.iter() {
            if symbol.st_type() != elf::STT_GNU_IFUNC || symbol.is_undefined(endian) {
                continue;
            }
            let Some(slots) = resolvers.remove(&symbol.st_value(endian).into()) else { continue };
            if let Some(name) = symbol_name(symbol, endian, symbols.strings()) {
                for slot in slots {
                    by_slot.insert(slot, name.clone());
                }
            }
            if resolvers.is_empty() {
                return;
            }
        }
    }
}

fn symbol_name<S: object::read::elf::Sym<Endian = Endianness>>(
    symbol: &S,
    endian: Endianness,
    strings: StringTable<'_>,
) -> Option<String> {
    let name = symbol.name(endian, strings).ok().filter(|n| !n.is_empty())?;
    Some(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_x86_64_stubs() {
        // Lazy .plt entry: jmp *0x2fe2(%rip); push $3; jmp PLT0.
        let lazy = [0xff, 0x25, 0xe2, 0x2f, 0x00, 0x00, 0x68, 0x03, 0, 0, 0, 0xe9, 0xd0, 0xff, 0xff, 0xff];
        assert_eq!(x86_64_stub(&lazy, 0x1030), Some(Target::Slot(0x1036 + 0x2fe2)));
        // .plt.sec under IBT: endbr64; bnd jmp *-0x10(%rip); nop.
        let sec = [0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0xf0, 0xff, 0xff, 0xff, 0x0f, 0x1f, 0x44, 0, 0];
        assert_eq!(x86_64_stub(&sec, 0x2000), Some(Target::Slot(0x200b - 0x10)));
        // Lazy .plt entry under IBT: endbr64; push $7; bnd jmp PLT0.
        let ibt = [0xf3, 0x0f, 0x1e, 0xfa, 0x68, 0x07, 0, 0, 0, 0xf2, 0xe9, 0xe1, 0xff, 0xff, 0xff, 0x90];
        assert_eq!(x86_64_stub(&ibt, 0x1040), Some(Target::JmpRel(7)));
        // PLT0: push GOT+8(%rip); jmp *GOT+16(%rip) is not a stub.
        let plt0 = [0xff, 0x35, 0x02, 0x30, 0, 0, 0xff, 0x25, 0x04, 0x30, 0, 0, 0x0f, 0x1f, 0x40, 0];
        assert_eq!(x86_64_stub(&plt0, 0x1020), None);
        // A bare push is not an IBT entry, and a short entry decodes nothing.
        assert_eq!(x86_64_stub(&[0x68, 1, 0, 0, 0], 0), None);
        assert_eq!(x86_64_stub(&[0xff, 0x25, 0], 0), None);
    }

    #[test]
    fn decodes_aarch64_stubs() {
        // PLT0 (stp; adrp x16; ldr x17, [x16, #0xff8]; add; br x17; 3 nop)
        // then two entries, the second behind `bti c`, as GNU ld lays them out.
        let insns: [u32; 17] = [
            0xa9bf_7bf0, // stp x16, x30, [sp, #-16]!
            0x9000_0090, // adrp x16, +0x10000
            0xf947_fe11, // ldr x17, [x16, #0xff8]
            0x913f_e210, // add x16, x16, #0xff8
            0xd61f_0220, // br x17
            0xd503_201f, // nop
            0xd503_201f,
            0xd503_201f,
            0xb000_0090, // adrp x16, +0x11000
            0xf940_0211, // ldr x17, [x16]
            0x9100_0210, // add x16, x16, #0
            0xd61f_0220, // br x17
            0xd503_245f, // bti c
            0xb000_0090, // adrp x16, +0x11000
            0xf940_0611, // ldr x17, [x16, #8]
            0x9100_2210, // add x16, x16, #8
            0xd61f_0220, // br x17
        ];
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_le_bytes()).collect();
        let stubs = aarch64_stubs(&bytes, 0x400);
        assert_eq!(
            stubs,
            [
                (0x404, 0x420, Target::Slot(0x10000 + 0xff8)),
                (0x420, 0x430, Target::Slot(0x11000)),
                (0x430, 0x444, Target::Slot(0x11008)),
            ]
        );
    }

    #[test]
    fn lookup_tells_stubs_unnamed_and_other_code_apart() {
        let stubs = PltStubs {
            sections: vec![(0x1020, 0x1060)],
            stubs: vec![Stub { start: 0x1030, end: 0x1040, name: "strlen@plt".into() }],
        };
        assert_eq!(stubs.lookup(ElfVaddr::new(0x1000)), PltLookup::NotPlt);
        assert_eq!(stubs.lookup(ElfVaddr::new(0x1020)), PltLookup::Unnamed);
        assert_eq!(stubs.lookup(ElfVaddr::new(0x1030)), PltLookup::Stub("strlen@plt"));
        assert_eq!(stubs.lookup(ElfVaddr::new(0x103f)), PltLookup::Stub("strlen@plt"));
        assert_eq!(stubs.lookup(ElfVaddr::new(0x1040)), PltLookup::Unnamed);
        assert_eq!(stubs.lookup(ElfVaddr::new(0x1060)), PltLookup::NotPlt);
        assert_eq!(PltStubs::parse(b"not an elf file at all"), None);
    }
}
