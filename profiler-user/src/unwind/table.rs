//! ELF → unwind rows: the table builder.
//!
//! Reads an executable's `.eh_frame` (and, for code it does not cover,
//! `.debug_frame`) with gimli and evaluates each FDE's call-frame program
//! into rows `(address, rule)`, where a rule says how to find the caller's
//! CFA, return address and `rbp` on x86-64. Rows are sorted and merged (a
//! row identical to the one before adds nothing), and the gaps between
//! FDEs are marked so a pc in code without CFI is not mistaken for the
//! function before it.
//!
//! [`CompactTable`] is the form the kernel reads: one index entry per 4 KiB
//! page and 4-byte rows naming a deduplicated rule, which keeps libc at
//! ~110 KiB and a 50 MB Rust binary at a few MiB (`docs/architecture.md`).
//!
//! Knows nothing of BPF maps or of the rest of stackwatch: it is tested on
//! this machine's libc and on the test binary itself.

use std::collections::HashMap;

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, DebugFrame, EhFrame, EndianSlice, LittleEndian, RegisterRule, UnwindContext,
    UnwindSection, X86_64,
};
use object::{Object as _, ObjectSection as _};
use profiler_common::unwind::{make_row, CfaKind, RbpKind, UnwindPage, UnwindRule, MAX_RULES, PAGE_BITS, PAGE_SIZE};
#[cfg(test)]
use profiler_common::unwind::{row_offset, row_rule};

/// One row: from `addr` until the next row, `rule` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub addr: u64,
    pub rule: UnwindRule,
}

/// Why a file has no table.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("not an ELF file this unwinder reads: {0}")]
    NotElf(String),
    #[error("no .eh_frame or .debug_frame")]
    NoCfi,
    #[error("a Go binary (unwound with frame pointers)")]
    Go,
    #[error("too large for the kernel maps (about {0} rows or pages)")]
    TooLarge(u64),
}

/// Counts of what the builder met, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BuildStats {
    pub fdes: u64,
    /// Rows whose rule is [`CfaKind::Unsupported`] (before merging).
    pub unsupported: u64,
    /// FDEs from `.debug_frame` (code `.eh_frame` does not cover).
    pub debug_frame_fdes: u64,
}

/// An executable's rows, sorted by address, consecutive duplicates merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UnwindTable {
    pub rows: Vec<Row>,
    pub stats: BuildStats,
}

/// A table whose text would need more pages than this is refused (4 GiB).
const MAX_PAGES: u64 = 1 << 20;

/// Builds the table of the ELF image `data`: a byte slice, or an
/// `object::ReadCache` over the file, which reads only the headers and the
/// call frame sections (the table manager's way: a file mapped whole would
/// count its touched pages in the profiler's resident memory).
pub(crate) fn build<'data, R: object::ReadRef<'data>>(data: R) -> Result<UnwindTable, BuildError> {
    let file = object::File::parse(data).map_err(|e| BuildError::NotElf(e.to_string()))?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(BuildError::NotElf(format!("architecture {:?}", file.architecture())));
    }
    // Go keeps frame pointers, and its runtime switches stacks in ways its
    // CFI does not describe.
    if file.section_by_name(".gopclntab").is_some() || file.section_by_name(".go.buildinfo").is_some() {
        return Err(BuildError::Go);
    }
    let mut bases = BaseAddresses::default();
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    if let Some(got) = file.section_by_name(".got") {
        bases = bases.set_got(got.address());
    }
    let cfi_bytes: u64 =
        [".eh_frame", ".debug_frame"].iter().filter_map(|name| file.section_by_name(name)).map(|s| s.size()).sum();
    if cfi_bytes > MAX_CFI_BYTES as u64 {
        return Err(BuildError::TooLarge(cfi_bytes / 5));
    }
    let mut raw: Vec<Row> = Vec::new();
    let mut stats = BuildStats::default();
    let mut covered: Vec<(u64, u64)> = Vec::new();
    let mut ctx = Box::new(UnwindContext::new());
    if let Some(section) = file.section_by_name(".eh_frame") {
        let bytes = section.data().map_err(|e| BuildError::NotElf(e.to_string()))?;
        let eh = EhFrame::new(bytes, LittleEndian);
        let bases = bases.clone().set_eh_frame(section.address());
        collect(&eh, &bases, &mut ctx, &mut raw, &mut stats, &mut covered, None)?;
    }
    if let Some(section) = file.section_by_name(".debug_frame") {
        if let Ok(bytes) = section.data() {
            let mut df = DebugFrame::new(bytes, LittleEndian);
            df.set_address_size(8);
            covered.sort_unstable();
            let before = stats.fdes;
            collect(&df, &bases, &mut ctx, &mut raw, &mut stats, &mut Vec::new(), Some(&covered))?;
            stats.debug_frame_fdes = stats.fdes - before;
        }
    }
    if stats.fdes == 0 {
        return Err(BuildError::NoCfi);
    }
    Ok(UnwindTable { rows: finish(raw), stats })
}

/// Before sorting, where an FDE stops (a row of its own: 16 bytes a row
/// keeps a large file's build within a few MiB).
const FDE_END: UnwindRule = UnwindRule { cfa_kind: 0xff, ..UnwindRule::NONE };

/// Call frame information larger than this (`.eh_frame` and `.debug_frame`
/// together; about 5 bytes a row, so ~600 k rows) is not built: the table
/// would take more than half the kernel's rows map, and building it more
/// memory than the profiler should use. Compilers' 100 MB libraries are
/// the usual case; their frames are walked with frame pointers.
pub(crate) const MAX_CFI_BYTES: usize = 3 << 20;
/// Rows evaluated before a build gives up (the same limit, in rows).
const MAX_RAW_ROWS: usize = 700_000;

/// Evaluates every FDE of `section` into `out`. FDEs overlapping `skip`
/// (sorted ranges already covered by `.eh_frame`) are left out.
fn collect<'a, S: UnwindSection<EndianSlice<'a, LittleEndian>>>(
    section: &S,
    bases: &BaseAddresses,
    ctx: &mut UnwindContext<usize>,
    out: &mut Vec<Row>,
    stats: &mut BuildStats,
    covered: &mut Vec<(u64, u64)>,
    skip: Option<&[(u64, u64)]>,
) -> Result<(), BuildError>
where
    S::Offset: std::hash::Hash + Eq,
{
    let mut entries = section.entries(bases);
    let mut cies = HashMap::new();
    loop {
        let entry = match entries.next() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            // A broken entry ends the section: keep what came before.
            Err(_) => break,
        };
        let CieOrFde::Fde(partial) = entry else { continue };
        let fde = match partial.parse(|section, bases, offset| {
            cies.entry(offset).or_insert_with(|| section.cie_from_offset(bases, offset)).clone()
        }) {
            Ok(fde) => fde,
            Err(_) => continue,
        };
        let (start, end) = (fde.initial_address(), fde.end_address());
        if start >= end || start == 0 {
            // Zero: an FDE of a function the linker dropped.
            continue;
        }
        if let Some(skip) = skip {
            if overlaps(skip, start, end) {
                continue;
            }
        }
        let signal = fde.is_signal_trampoline();
        let mut rows = match fde.rows(section, bases, ctx) {
            Ok(rows) => rows,
            Err(_) => continue,
        };
        stats.fdes += 1;
        covered.push((start, end));
        loop {
            match rows.next_row() {
                Ok(Some(row)) => {
                    let rule = convert(section, row, signal);
                    if rule.cfa_kind == CfaKind::Unsupported as u8 {
                        stats.unsupported += 1;
                    }
                    out.push(Row { addr: row.start_address(), rule });
                }
                Ok(None) => break,
                Err(_) => {
                    // What was evaluated so far is right; after it, nothing.
                    break;
                }
            }
        }
        out.push(Row { addr: end, rule: FDE_END });
        if out.len() > MAX_RAW_ROWS {
            return Err(BuildError::TooLarge(out.len() as u64));
        }
    }
    Ok(())
}

fn overlaps(sorted: &[(u64, u64)], start: u64, end: u64) -> bool {
    let i = sorted.partition_point(|&(s, _)| s < end);
    i > 0 && sorted[i - 1].1 > start
}

/// `DW_OP_breg7 (rsp): 8; DW_OP_breg16 (rip): 0; DW_OP_lit15; DW_OP_and;
/// DW_OP_litN; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus`: the PLT
/// entry's CFA (N is 11 for `.plt`, 10 for some linkers' `.plt.sec`).
fn plt_threshold(expr: &[u8]) -> Option<i32> {
    match expr {
        [0x77, 8, 0x80, 0, 0x3f, 0x1a, lit, 0x2a, 0x33, 0x24, 0x22] if (0x30..=0x4f).contains(lit) => {
            Some(i32::from(*lit - 0x30))
        }
        _ => None,
    }
}

/// `DW_OP_breg7 (rsp): 160; DW_OP_deref`: glibc's `__restore_rt`, whose
/// CFA is the interrupted `rsp` saved in the `ucontext` at `rsp`.
const SIGNAL_CFA: &[u8] = &[0x77, 0xa0, 0x01, 0x06];

fn convert<'a, S: UnwindSection<EndianSlice<'a, LittleEndian>>>(
    section: &S,
    row: &gimli::UnwindTableRow<usize>,
    signal: bool,
) -> UnwindRule {
    let unsupported = UnwindRule { cfa_kind: CfaKind::Unsupported as u8, rbp_kind: 0, rbp_offset: 0, cfa_offset: 0 };
    let expression = |e: &gimli::UnwindExpression<usize>| e.get(section).ok().map(|e| e.0.slice());
    let (cfa_kind, cfa_offset) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let Ok(offset) = i32::try_from(*offset) else { return unsupported };
            match *register {
                X86_64::RSP => (CfaKind::Rsp, offset),
                X86_64::RBP => (CfaKind::Rbp, offset),
                _ => return unsupported,
            }
        }
        CfaRule::Expression(e) => match expression(e) {
            Some(bytes) if signal && bytes == SIGNAL_CFA => {
                return UnwindRule { cfa_kind: CfaKind::Signal as u8, rbp_kind: 0, rbp_offset: 0, cfa_offset: 0 };
            }
            Some(bytes) => match plt_threshold(bytes) {
                Some(threshold) => (CfaKind::Plt, threshold),
                None => return unsupported,
            },
            None => return unsupported,
        },
    };
    match row.register(X86_64::RA) {
        Some(RegisterRule::Offset(-8)) | None => {}
        Some(RegisterRule::Undefined) => {
            return UnwindRule { cfa_kind: CfaKind::End as u8, rbp_kind: 0, rbp_offset: 0, cfa_offset: 0 };
        }
        Some(_) => return unsupported,
    }
    let (rbp_kind, rbp_offset) = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::SameValue) | Some(RegisterRule::Undefined) => (RbpKind::Same, 0),
        Some(RegisterRule::Offset(o)) => match i16::try_from(o) {
            Ok(o) => (RbpKind::AtCfa, o),
            Err(_) => (RbpKind::Unsupported, 0),
        },
        Some(_) => (RbpKind::Unsupported, 0),
    };
    UnwindRule { cfa_kind: cfa_kind as u8, rbp_kind: rbp_kind as u8, rbp_offset, cfa_offset }
}

/// Sorts, resolves FDE ends against the next FDE's start and merges, in
/// place.
fn finish(mut raw: Vec<Row>) -> Vec<Row> {
    // At one address a real row wins over the end of the FDE before.
    raw.sort_unstable_by_key(|r| (r.addr, r.rule != FDE_END));
    let mut out = 0;
    let mut i = 0;
    while i < raw.len() {
        // The last entry at an address is the one that applies there.
        let mut j = i;
        while j + 1 < raw.len() && raw[j + 1].addr == raw[i].addr {
            j += 1;
        }
        let mut r = raw[j];
        if r.rule == FDE_END {
            r.rule = UnwindRule::NONE;
        }
        if out == 0 || raw[out - 1].rule != r.rule {
            raw[out] = r;
            out += 1;
        }
        i = j + 1;
    }
    raw.truncate(out);
    // A table starting with a gap marker has nothing before it anyway.
    let leading = raw.iter().take_while(|r| r.rule == UnwindRule::NONE).count();
    raw.drain(..leading);
    raw.shrink_to_fit();
    raw
}

impl UnwindTable {
    /// The rule at `addr`, by binary search over the rows.
    #[cfg(test)]
    pub(crate) fn lookup(&self, addr: u64) -> Option<UnwindRule> {
        let i = self.rows.partition_point(|r| r.addr <= addr);
        let rule = self.rows.get(i.checked_sub(1)?)?.rule;
        (rule != UnwindRule::NONE).then_some(rule)
    }
}

/// A table in the kernel's layout, with rule indices local to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CompactTable {
    /// `vaddr >> PAGE_BITS` of `pages[0]`.
    pub first_page: u64,
    /// `first_row` is an index into `rows`.
    pub pages: Vec<UnwindPage>,
    /// [`make_row`] with an index into `rules`.
    pub rows: Vec<u32>,
    pub rules: Vec<UnwindRule>,
}

impl CompactTable {
    /// Lays `table` out page by page. Every non-empty page begins with a
    /// row at offset 0 (the rule in effect where the page starts), so a
    /// lookup reads one page only.
    pub(crate) fn new(table: &UnwindTable) -> Result<Self, BuildError> {
        let (Some(first), Some(last)) = (table.rows.first(), table.rows.last()) else {
            return Ok(Self::default());
        };
        let first_page = first.addr >> PAGE_BITS;
        let page_count = (last.addr >> PAGE_BITS) - first_page + 1;
        if page_count > MAX_PAGES {
            return Err(BuildError::TooLarge(page_count));
        }
        let mut rules: Vec<UnwindRule> = Vec::new();
        let mut index: HashMap<UnwindRule, u32> = HashMap::new();
        let mut intern = |rule: UnwindRule| -> u32 {
            *index.entry(rule).or_insert_with(|| {
                rules.push(rule);
                (rules.len() - 1) as u32
            })
        };
        let mut pages = Vec::with_capacity(page_count as usize);
        let mut rows: Vec<u32> = Vec::with_capacity(table.rows.len() + page_count as usize);
        let mut next = 0;
        let mut current = UnwindRule::NONE;
        let mut page_rows: Vec<(u32, UnwindRule)> = Vec::new();
        for page in first_page..first_page + page_count {
            page_rows.clear();
            let page_end = (page + 1) << PAGE_BITS;
            let begins_with_row = table.rows.get(next).is_some_and(|r| r.addr == page << PAGE_BITS);
            if !begins_with_row {
                page_rows.push((0, current));
            }
            while let Some(r) = table.rows.get(next).filter(|r| r.addr < page_end) {
                page_rows.push(((r.addr & (PAGE_SIZE - 1)) as u32, r.rule));
                current = r.rule;
                next += 1;
            }
            let start = rows.len();
            // A page that is one gap holds nothing.
            if !(page_rows.len() == 1 && page_rows[0].1 == UnwindRule::NONE) {
                rows.extend(page_rows.iter().map(|&(offset, rule)| make_row(offset, intern(rule))));
            }
            pages.push(UnwindPage { first_row: start as u32, count: (rows.len() - start) as u32 });
        }
        if rules.len() as u64 > u64::from(MAX_RULES) {
            return Err(BuildError::TooLarge(rules.len() as u64));
        }
        Ok(Self { first_page, pages, rows, rules })
    }

    /// The rule at `addr`, found the way the kernel program finds it.
    #[cfg(test)]
    pub(crate) fn lookup(&self, addr: u64) -> Option<UnwindRule> {
        let page = (addr >> PAGE_BITS).checked_sub(self.first_page)?;
        let page = self.pages.get(usize::try_from(page).ok()?)?;
        let rows = self.rows.get(page.first_row as usize..(page.first_row + page.count) as usize)?;
        let offset = (addr & (PAGE_SIZE - 1)) as u32;
        let i = rows.partition_point(|&r| row_offset(r) <= offset);
        let rule = self.rules[row_rule(*rows.get(i.checked_sub(1)?)?) as usize];
        (rule != UnwindRule::NONE).then_some(rule)
    }

    /// Bytes the table takes in the kernel maps, rules counted in full.
    pub(crate) fn bytes(&self) -> usize {
        self.pages.len() * 8 + self.rows.len() * 4 + self.rules.len() * 8
    }
}

#[cfg(test)]
mod tests;
