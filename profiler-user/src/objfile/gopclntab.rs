//! Go's function table, `.gopclntab`: function names, source files, lines
//! and inlined calls for Go code, read straight from the binary.
//!
//! The Go runtime needs this table for its own tracebacks, so it survives
//! `go build -ldflags="-s -w"`, which removes `.symtab` and DWARF (and with
//! them everything blazesym reads). The layout follows the runtime's readers
//! (`runtime/symtab.go`, `_func` in `runtime/runtime2.go`) and the linker's
//! writer (`cmd/link/internal/ld/pcln.go`); the header's magic says which:
//!
//! | magic        | Go         | differences                                         |
//! |--------------|------------|-----------------------------------------------------|
//! | `0xfffffffb` | 1.2–1.15   | one region; pointer-sized entries; no inline trees read |
//! | `0xfffffffa` | 1.16–1.17  | name/CU/file/pc regions; funcdata are absolute addresses |
//! | `0xfffffff0` | 1.18–1.19  | 32-bit entries relative to `textStart`; funcdata relative to `go:func.*` |
//! | `0xfffffff1` | 1.20+      | `_func.startLine`; 16-byte inline records           |
//!
//! Inlined calls come from the function's inline tree (`FUNCDATA_InlTree`)
//! indexed by `PCDATA_InlTreeIndex`, exactly as the runtime expands them. From
//! Go 1.18 on, funcdata offsets are relative to `moduledata.gofunc`, a value
//! stored nowhere but in the runtime's `moduledata`, which
//! [`find_gofunc`] locates by scanning for its pointer to the table.

use super::elf::{vaddr_to_file_offset, ElfInfo, Segment, TableLocation};
use crate::addr::ElfVaddr;

/// `FUNCDATA_InlTree` (Go 1.16 and later).
const FUNCDATA_INL_TREE: usize = 3;
/// `PCDATA_InlTreeIndex`.
const PCDATA_INL_TREE_INDEX: usize = 2;
/// Deeper inline chains than this mean corrupt data (Go caps inlining far lower).
const MAX_INLINE_DEPTH: usize = 64;
/// Longest name or path read; anything longer is corrupt data.
const MAX_STRING: usize = 64 * 1024;
/// A function table with more entries than this is not real.
const MAX_FUNCS: u64 = 10_000_000;

/// Table format, named after the first Go release that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum GoVersion {
    V12,
    V116,
    V118,
    V120,
}

impl GoVersion {
    pub(crate) fn from_magic(magic: u32) -> Option<Self> {
        match magic {
            0xffff_fffb => Some(Self::V12),
            0xffff_fffa => Some(Self::V116),
            0xffff_fff0 => Some(Self::V118),
            0xffff_fff1 => Some(Self::V120),
            _ => None,
        }
    }
}

/// One source-level frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GoFrame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Where funcdata (here: inline trees) live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FuncDataBase {
    /// Go 1.16: funcdata slots hold absolute virtual addresses.
    Absolute,
    /// Go 1.18+: slots are offsets from `moduledata.gofunc`, this address.
    GoFunc(u64),
    /// Unknown (`moduledata` not found, or an unsupported format): no
    /// inlined frames, each address is named after its outermost function.
    Unavailable,
}

/// The parsed header: region offsets relative to the table's start.
#[derive(Clone, Copy, Debug)]
struct Header {
    version: GoVersion,
    quantum: u64,
    ptr: usize,
    nfunc: usize,
    text_start: u64,
    funcnames: usize,
    cutab: usize,
    filetab: usize,
    nfiles: usize,
    pctab: usize,
    functab: usize,
}

/// A function's `_func` record.
#[derive(Clone, Copy, Debug)]
struct Func {
    entry: u64,
    /// Offset of the `_func` record within the table.
    off: usize,
}

/// A Go function table over the bytes of its ELF file.
pub(crate) struct GoTable<D> {
    data: D,
    /// The table's bytes within `data`.
    start: usize,
    end: usize,
    hdr: Header,
    funcdata: FuncDataBase,
    segments: Vec<Segment>,
}

impl<D: AsRef<[u8]>> GoTable<D> {
    /// Reads the table at `loc` in the file image `data`, whose loadable
    /// segments are `segments`. `None` if the header is not a Go table's.
    pub(crate) fn new(data: D, loc: TableLocation, segments: Vec<Segment>) -> Option<Self> {
        let end = loc.offset.checked_add(loc.len)?.min(data.as_ref().len());
        let hdr = parse_header(data.as_ref().get(loc.offset..end)?)?;
        let mut table = Self { data, start: loc.offset, end, hdr, funcdata: FuncDataBase::Unavailable, segments };
        let base = match hdr.version {
            GoVersion::V12 => FuncDataBase::Unavailable,
            GoVersion::V116 => FuncDataBase::Absolute,
            GoVersion::V118 | GoVersion::V120 => find_gofunc(table.data.as_ref(), &table.segments, loc.vaddr, &hdr)
                .map_or(FuncDataBase::Unavailable, FuncDataBase::GoFunc),
        };
        table.funcdata = base;
        if base != FuncDataBase::Unavailable && !table.inline_trees_look_valid() {
            table.funcdata = FuncDataBase::Unavailable;
        }
        Some(table)
    }

    pub(crate) fn version(&self) -> GoVersion {
        self.hdr.version
    }

    pub(crate) fn funcdata_base(&self) -> FuncDataBase {
        self.funcdata
    }

    pub(crate) fn func_count(&self) -> usize {
        self.hdr.nfunc
    }

    /// Entry address of the function named `name` (a linear scan: for
    /// the few lookups of probe placement, not for symbolization).
    pub(crate) fn entry_of(&self, name: &str) -> Option<ElfVaddr> {
        (0..self.hdr.nfunc).find_map(|i| {
            let f = self.func(i)?;
            (self.func_name(&f)? == name).then_some(ElfVaddr::new(f.entry))
        })
    }

    /// Entry address and name of function `i` (in address order).
    #[cfg(test)]
    pub(crate) fn function(&self, i: usize) -> Option<(u64, String)> {
        let f = self.func(i)?;
        Some((f.entry, self.func_name(&f)?.to_owned()))
    }

    /// The frames at link-time address `pc`, innermost (the deepest
    /// inlined call) first, the function that contains `pc` last.
    pub(crate) fn find(&self, pc: ElfVaddr) -> Option<Vec<GoFrame>> {
        let pc = pc.get();
        let f = self.find_func(pc)?;
        let outer = self.func_name(&f)?.to_owned();
        let tree = self.inline_tree(&f);
        let mut frames = Vec::new();
        let mut at = pc;
        for _ in 0..MAX_INLINE_DEPTH {
            let (file, line) = self.file_line(&f, at);
            let call = tree.and_then(|tree| {
                let index = self.pcvalue(&f, self.pcdata_offset(&f, PCDATA_INL_TREE_INDEX)?, at)?;
                self.inlined_call(tree, usize::try_from(index).ok()?)
            });
            match call {
                Some((name, parent_pc)) => {
                    frames.push(GoFrame { function: name.to_owned(), file, line });
                    at = f.entry.wrapping_add(parent_pc);
                }
                None => {
                    frames.push(GoFrame { function: outer, file, line });
                    return Some(frames);
                }
            }
        }
        frames.push(GoFrame { function: outer, file: None, line: None });
        Some(frames)
    }

    fn table(&self) -> &[u8] {
        &self.data.as_ref()[self.start..self.end]
    }

    /// Size of a functab field: 32-bit from 1.18, pointer-sized before.
    fn field_size(&self) -> usize {
        if self.hdr.version >= GoVersion::V118 {
            4
        } else {
            self.hdr.ptr
        }
    }

    /// Entry address of functab slot `i` (slot `nfunc` is the end of text).
    fn entry(&self, i: usize) -> Option<u64> {
        let fs = self.field_size();
        let raw = read_uint(self.table(), self.hdr.functab + 2 * i * fs, fs)?;
        Some(if self.hdr.version >= GoVersion::V118 { raw.wrapping_add(self.hdr.text_start) } else { raw })
    }

    fn func(&self, i: usize) -> Option<Func> {
        if i >= self.hdr.nfunc {
            return None;
        }
        let fs = self.field_size();
        let funcoff = usize::try_from(read_uint(self.table(), self.hdr.functab + (2 * i + 1) * fs, fs)?).ok()?;
        // Go 1.2 offsets count from the table's start, later ones from the
        // function region (`pclnOffset`), which begins with the functab.
        let off = if self.hdr.version == GoVersion::V12 { funcoff } else { self.hdr.functab.checked_add(funcoff)? };
        Some(Func { entry: self.entry(i)?, off })
    }

    fn find_func(&self, pc: u64) -> Option<Func> {
        let n = self.hdr.nfunc;
        if pc < self.entry(0)? || pc >= self.entry(n)? {
            return None;
        }
        // The last slot whose entry is <= pc.
        let (mut lo, mut hi) = (0, n);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)? <= pc {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.func(lo)
    }

    /// Size of the pointer-or-uint32 entry field at the start of `_func`.
    fn entry_field_size(&self) -> usize {
        if self.hdr.version >= GoVersion::V118 {
            4
        } else {
            self.hdr.ptr
        }
    }

    /// The `n`th 32-bit field after `_func`'s entry (1 = nameoff, 5 =
    /// pcfile, 6 = pcln, 7 = npcdata, 8 = cuOffset).
    fn field(&self, f: &Func, n: usize) -> Option<u32> {
        read_u32(self.table(), f.off + self.entry_field_size() + (n - 1) * 4)
    }

    /// Size of `_func`'s fixed part, after which the pcdata offsets follow.
    fn fixed_size(&self) -> usize {
        let words = match self.hdr.version {
            GoVersion::V12 => 8,
            GoVersion::V116 | GoVersion::V118 => 9,
            GoVersion::V120 => 10,
        };
        self.entry_field_size() + words * 4
    }

    fn npcdata(&self, f: &Func) -> Option<usize> {
        usize::try_from(self.field(f, 7)?).ok()
    }

    fn nfuncdata(&self, f: &Func) -> Option<usize> {
        self.table().get(f.off + self.fixed_size() - 1).map(|&b| usize::from(b))
    }

    fn func_name(&self, f: &Func) -> Option<&str> {
        let nameoff = usize::try_from(self.field(f, 1)?).ok()?;
        self.name_at(nameoff)
    }

    fn name_at(&self, nameoff: usize) -> Option<&str> {
        read_cstr(self.table(), self.hdr.funcnames.checked_add(nameoff)?)
    }

    /// pctab offset of pcdata table `index`, when the function has one.
    fn pcdata_offset(&self, f: &Func, index: usize) -> Option<u32> {
        if index >= self.npcdata(f)? {
            return None;
        }
        read_u32(self.table(), f.off + self.fixed_size() + index * 4).filter(|&off| off != 0)
    }

    /// The value of the pc-value table at `table_off` for `target`
    /// (`runtime.pcvalue`): zig-zag value deltas and pc deltas in units of
    /// the instruction quantum, starting from -1 at the entry.
    fn pcvalue(&self, f: &Func, table_off: u32, target: u64) -> Option<i32> {
        if table_off == 0 {
            return None;
        }
        let table = self.table();
        let mut p = self.hdr.pctab.checked_add(usize::try_from(table_off).ok()?)?;
        let mut pc = f.entry;
        let mut value: i32 = -1;
        let mut first = true;
        loop {
            let uvdelta = read_varint(table, &mut p)?;
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            let delta = if uvdelta & 1 != 0 { !(uvdelta >> 1) as i32 } else { (uvdelta >> 1) as i32 };
            value = value.wrapping_add(delta);
            let pcdelta = read_varint(table, &mut p)?;
            pc = pc.checked_add(u64::from(pcdelta) * self.hdr.quantum)?;
            if target < pc {
                return Some(value);
            }
        }
    }

    fn file_line(&self, f: &Func, pc: u64) -> (Option<String>, Option<u32>) {
        let file =
            self.field(f, 5).and_then(|off| self.pcvalue(f, off, pc)).and_then(|fileno| self.file_name(f, fileno));
        let line = self
            .field(f, 6)
            .and_then(|off| self.pcvalue(f, off, pc))
            .and_then(|line| u32::try_from(line).ok())
            .filter(|&l| l > 0);
        (file, line)
    }

    fn file_name(&self, f: &Func, fileno: i32) -> Option<String> {
        let table = self.table();
        let name = if self.hdr.version == GoVersion::V12 {
            // A table of 32-bit offsets from the table's start; entry 0 is the count.
            let fileno = usize::try_from(fileno).ok().filter(|&n| n > 0 && n < self.hdr.nfiles)?;
            let off = read_u32(table, self.hdr.filetab + 4 * fileno)?;
            read_cstr(table, usize::try_from(off).ok()?)?
        } else {
            // Per-CU file numbers, through the CU table into the file names.
            let fileno = u32::try_from(fileno).ok()?;
            let index = usize::try_from(self.field(f, 8)?.checked_add(fileno)?).ok()?;
            let off = read_u32(table, self.hdr.cutab.checked_add(index * 4)?)?;
            if off == u32::MAX {
                return None;
            }
            read_cstr(table, self.hdr.filetab.checked_add(usize::try_from(off).ok()?)?)?
        };
        Some(name.to_owned())
    }

    /// File offset (within `data`) of the function's inline tree.
    fn inline_tree(&self, f: &Func) -> Option<usize> {
        if self.funcdata == FuncDataBase::Unavailable || FUNCDATA_INL_TREE >= self.nfuncdata(f)? {
            return None;
        }
        let table = self.table();
        let slots = f.off + self.fixed_size() + self.npcdata(f)? * 4;
        let vaddr = match self.funcdata {
            FuncDataBase::GoFunc(gofunc) => {
                let off = read_u32(table, slots + FUNCDATA_INL_TREE * 4)?;
                if off == u32::MAX {
                    return None;
                }
                gofunc.checked_add(u64::from(off))?
            }
            FuncDataBase::Absolute => {
                // Pointer-aligned from the record's start (records are).
                let ptr = self.hdr.ptr;
                let slots = f.off + (slots - f.off).next_multiple_of(ptr);
                read_uint(table, slots + FUNCDATA_INL_TREE * ptr, ptr).filter(|&a| a != 0)?
            }
            FuncDataBase::Unavailable => return None,
        };
        usize::try_from(vaddr_to_file_offset(&self.segments, ElfVaddr::new(vaddr))?.get()).ok()
    }

    /// Entry `index` of the inline tree at file offset `tree`: the inlined
    /// function's name and the pc offset (from the entry) of its call site.
    fn inlined_call(&self, tree: usize, index: usize) -> Option<(&str, u64)> {
        self.inlined_record(tree, index).map(|(name, parent_pc, _)| (name, parent_pc))
    }

    /// [`inlined_call`](Self::inlined_call) plus a field that must be
    /// positive in a real record: the call line (before 1.20) or the
    /// callee's start line.
    fn inlined_record(&self, tree: usize, index: usize) -> Option<(&str, u64, i32)> {
        let data = self.data.as_ref();
        let (size, name_at, parent_pc_at, line_at) = match self.hdr.version {
            // {parent i16, funcID u8, _ u8, file i32, line i32, func_ i32, parentPc i32}
            GoVersion::V116 | GoVersion::V118 => (20, 12, 16, 8),
            // {funcID u8, _ [3]u8, nameOff i32, parentPc i32, startLine i32}
            GoVersion::V120 => (16, 4, 8, 12),
            GoVersion::V12 => return None,
        };
        let rec = tree.checked_add(index.checked_mul(size)?)?;
        let nameoff = usize::try_from(read_u32(data, rec + name_at)? as i32).ok()?;
        let parent_pc = u64::try_from(read_u32(data, rec + parent_pc_at)? as i32).ok()?;
        let line = read_u32(data, rec + line_at)? as i32;
        Some((self.name_at(nameoff)?, parent_pc, line))
    }

    /// Decodes the first inline record of up to 64 functions that have an
    /// inline tree: a wrong `gofunc` (an unknown `moduledata` layout) shows
    /// up as garbage names or call sites outside the function.
    fn inline_trees_look_valid(&self) -> bool {
        let mut checked = 0;
        for i in 0..self.hdr.nfunc {
            let Some(f) = self.func(i) else { return false };
            let Some(tree) = self.inline_tree(&f) else { continue };
            let size = self.entry(i + 1).unwrap_or(f.entry).saturating_sub(f.entry);
            match self.inlined_record(tree, 0) {
                Some((name, parent_pc, line)) if parent_pc < size && line > 0 && looks_like_go_name(name) => {}
                _ => return false,
            }
            checked += 1;
            if checked == 64 {
                break;
            }
        }
        true
    }
}

/// The Go function table of a Go binary, if it is one.
pub(crate) fn go_table<D: AsRef<[u8]>>(map: D, info: &ElfInfo) -> Option<GoTable<D>> {
    let loc = match info.gopclntab {
        Some(loc) => loc,
        None if info.maybe_go => scan_for_table(map.as_ref(), &info.segments)?,
        None => return None,
    };
    GoTable::new(map, loc, info.segments.clone())
}

fn looks_like_go_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| !c.is_control() && c != '\u{fffd}')
}

/// Parses and sanity-checks a table header.
fn parse_header(t: &[u8]) -> Option<Header> {
    let version = GoVersion::from_magic(read_u32(t, 0)?)?;
    let (quantum, ptr) = (*t.get(6)?, *t.get(7)?);
    if t[4] != 0 || t[5] != 0 || !matches!(quantum, 1 | 2 | 4) || !matches!(ptr, 4 | 8) {
        return None;
    }
    let ptr = usize::from(ptr);
    let word = |i: usize| read_uint(t, 8 + i * ptr, ptr);
    let region = |i: usize| word(i).and_then(|w| usize::try_from(w).ok()).filter(|&o| o < t.len());
    let nfunc = word(0).filter(|&n| n > 0 && n < MAX_FUNCS)? as usize;
    let mut hdr = Header {
        version,
        quantum: u64::from(quantum),
        ptr,
        nfunc,
        text_start: 0,
        funcnames: 0,
        cutab: 0,
        filetab: 0,
        nfiles: 0,
        pctab: 0,
        functab: 0,
    };
    match version {
        GoVersion::V118 | GoVersion::V120 => {
            hdr.nfiles = usize::try_from(word(1)?).ok()?;
            hdr.text_start = word(2)?;
            (hdr.funcnames, hdr.cutab, hdr.filetab, hdr.pctab, hdr.functab) =
                (region(3)?, region(4)?, region(5)?, region(6)?, region(7)?);
        }
        GoVersion::V116 => {
            hdr.nfiles = usize::try_from(word(1)?).ok()?;
            (hdr.funcnames, hdr.cutab, hdr.filetab, hdr.pctab, hdr.functab) =
                (region(2)?, region(3)?, region(4)?, region(5)?, region(6)?);
        }
        GoVersion::V12 => {
            hdr.functab = 8 + ptr;
            let fileoff = read_u32(t, hdr.functab + (2 * nfunc + 1) * ptr)? as usize;
            hdr.filetab = fileoff;
            hdr.nfiles = read_u32(t, fileoff)? as usize;
        }
    }
    let field = if version >= GoVersion::V118 { 4 } else { ptr };
    if hdr.functab.checked_add((2 * nfunc + 1) * field)? > t.len() {
        return None;
    }
    Some(hdr)
}

/// Finds a function table by its header when no section names it (fully
/// stripped files): tables are pointer-aligned, so only aligned offsets of
/// non-executable segments are tried, and a candidate must parse and have
/// its first function inside an executable segment.
pub(crate) fn scan_for_table(data: &[u8], segments: &[Segment]) -> Option<TableLocation> {
    for seg in segments.iter().filter(|s| !s.exec) {
        let start = usize::try_from(seg.offset).ok()?;
        let end = start.saturating_add(usize::try_from(seg.filesz).ok()?).min(data.len());
        let mut off = start.next_multiple_of(8);
        while off + 16 <= end {
            if read_u32(data, off).and_then(GoVersion::from_magic).is_some() {
                let loc = TableLocation { offset: off, len: end - off, vaddr: seg.vaddr + (off - start) as u64 };
                if let Some(table) = GoTable::new(data, loc, segments.to_vec()) {
                    let first = table.entry(0).unwrap_or(0);
                    if segments.iter().any(|s| s.exec && s.vaddr <= first && first - s.vaddr < s.filesz) {
                        return Some(loc);
                    }
                }
            }
            off += 8;
        }
    }
    None
}

/// Locates `runtime.firstmoduledata` and returns its `gofunc` field.
///
/// `moduledata` starts with a pointer to the table's header followed by the
/// `funcnametab` and `cutab` slices, which point into the table: that
/// triple is found by scanning the non-executable segments. `gofunc` sits
/// after a fixed run of pointer-sized fields (1.20 added `covctrs` and
/// `ecovctrs` before it); the `text` field in between must equal the
/// header's `textStart`.
fn find_gofunc(data: &[u8], segments: &[Segment], table_vaddr: u64, hdr: &Header) -> Option<u64> {
    let ptr = hdr.ptr;
    // Words before `gofunc`: pcHeader, 6 slices (3 words each), findfunctab,
    // minpc, maxpc, text … enoptrbss (10), [covctrs, ecovctrs], end, gcdata,
    // gcbss, types, etypes, rodata.
    let gofunc_slot = match hdr.version {
        GoVersion::V118 => 38,
        GoVersion::V120 => 40,
        _ => return None,
    };
    const TEXT_SLOT: usize = 22;
    let funcnames = table_vaddr.checked_add(hdr.funcnames as u64)?;
    let cutab = table_vaddr.checked_add(hdr.cutab as u64)?;
    for seg in segments.iter().filter(|s| !s.exec) {
        let start = usize::try_from(seg.offset).ok()?;
        let end = start.saturating_add(usize::try_from(seg.filesz).ok()?).min(data.len());
        let mut off = start.next_multiple_of(ptr);
        while off + (gofunc_slot + 1) * ptr <= end {
            let word = |slot: usize| read_uint(data, off + slot * ptr, ptr);
            if word(0) == Some(table_vaddr)
                && word(1) == Some(funcnames)
                && word(4) == Some(cutab)
                && (hdr.text_start == 0 || word(TEXT_SLOT) == Some(hdr.text_start))
            {
                let gofunc = word(gofunc_slot)?;
                return vaddr_to_file_offset(segments, ElfVaddr::new(gofunc)).map(|_| gofunc);
            }
            off += ptr;
        }
    }
    None
}

fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// A little-endian unsigned integer of `size` (4 or 8) bytes.
fn read_uint(b: &[u8], off: usize, size: usize) -> Option<u64> {
    match size {
        4 => read_u32(b, off).map(u64::from),
        8 => {
            let bytes = b.get(off..off.checked_add(8)?)?;
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            Some(u64::from_le_bytes(word))
        }
        _ => None,
    }
}

/// An unsigned LEB128 varint (at most 32 bits), advancing `p`.
fn read_varint(b: &[u8], p: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*p)?;
        *p += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The NUL-terminated UTF-8 string at `off`.
fn read_cstr(b: &[u8], off: usize) -> Option<&str> {
    let rest = b.get(off..)?;
    let len = rest.iter().take(MAX_STRING).position(|&c| c == 0)?;
    std::str::from_utf8(&rest[..len]).ok()
}

#[cfg(test)]
pub(crate) mod tests;
