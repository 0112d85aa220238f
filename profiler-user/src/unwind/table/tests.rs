use object::ObjectSymbol as _;

use super::*;

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

fn rsp(offset: i32) -> UnwindRule {
    UnwindRule { cfa_kind: CfaKind::Rsp as u8, rbp_kind: 0, rbp_offset: 0, cfa_offset: offset }
}

fn symbol(data: &[u8], name: &str) -> u64 {
    let file = object::File::parse(data).unwrap();
    file.symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
        .unwrap_or_else(|| panic!("no symbol `{name}`"))
}

/// Every address where the answer can change, and the byte before it:
/// the compact layout must agree with the plain rows everywhere.
fn assert_layouts_agree(table: &UnwindTable) {
    let compact = CompactTable::new(table).unwrap();
    for r in &table.rows {
        for addr in [r.addr.saturating_sub(1), r.addr, r.addr + 1] {
            assert_eq!(compact.lookup(addr), table.lookup(addr), "at {addr:#x}");
        }
    }
    for page in 0..compact.pages.len() as u64 {
        let addr = (compact.first_page + page) << PAGE_BITS;
        assert_eq!(compact.lookup(addr), table.lookup(addr), "page start {addr:#x}");
    }
}

#[test]
fn libc_rules() {
    let data = std::fs::read(LIBC).unwrap();
    let table = build(&data[..]).unwrap();
    assert!(table.rows.len() > 10_000, "{} rows", table.rows.len());
    assert!(table.rows.windows(2).all(|w| w[0].addr < w[1].addr && w[0].rule != w[1].rule));
    // A syscall wrapper, frameless: the return address is at rsp on entry.
    for f in ["clock_nanosleep", "read", "malloc"] {
        assert_eq!(table.lookup(symbol(&data, f)), Some(rsp(8)), "{f}");
    }
    // The signal return trampoline (`__restore_rt`, not exported).
    assert_eq!(table.rows.iter().filter(|r| r.rule.cfa_kind == CfaKind::Signal as u8).count(), 1);
    // The PLT's expression.
    assert!(table.rows.iter().any(|r| r.rule.cfa_kind == CfaKind::Plt as u8));
    // `clone3`'s child side ends the stack (DW_CFA_undefined rip).
    assert!(table.rows.iter().any(|r| r.rule.cfa_kind == CfaKind::End as u8));
    assert_layouts_agree(&table);
    let compact = CompactTable::new(&table).unwrap();
    assert!(compact.rules.len() < 2000, "{} distinct rules", compact.rules.len());
    // ~4 bytes a row plus 8 per page: well under lightswitch's 16-byte rows.
    assert!(compact.bytes() < table.rows.len() * 8, "{} bytes", compact.bytes());
}

#[inline(never)]
fn probe_function(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(3)
}

#[test]
fn rust_binary_without_frame_pointers() {
    let data = std::fs::read("/proc/self/exe").unwrap();
    let table = build(&data[..]).unwrap();
    let addr = symbol_containing(&data, "probe_function");
    assert_eq!(table.lookup(addr), Some(rsp(8)));
    assert_eq!(probe_function(1), 3);
    assert_layouts_agree(&table);
}

fn symbol_containing(data: &[u8], part: &str) -> u64 {
    let file = object::File::parse(data).unwrap();
    file.symbols()
        .find(|s| s.name().is_ok_and(|n| n.contains(part) && n.contains("tests")) && s.size() > 0)
        .map(|s| s.address())
        .unwrap_or_else(|| panic!("no symbol containing `{part}`"))
}

fn raw(addr: u64, rule: UnwindRule) -> Row {
    Row { addr, rule }
}

fn end(addr: u64) -> Row {
    Row { addr, rule: FDE_END }
}

#[test]
fn gaps_merges_and_page_starts() {
    // FDE 1 [0x1000, 0x1010), FDE 2 starts right where it ends, a gap, then
    // FDE 3 crossing into the next pages.
    let rows = finish(vec![
        raw(0x1000, rsp(8)),
        raw(0x1004, rsp(16)),
        end(0x1010),
        raw(0x1010, rsp(8)),
        raw(0x1011, rsp(8)),
        end(0x1020),
        raw(0x1ff0, rsp(8)),
        raw(0x2ff8, rsp(24)),
        end(0x3800),
    ]);
    let table = UnwindTable { rows, stats: BuildStats::default() };
    assert_eq!(table.lookup(0xfff), None);
    assert_eq!(table.lookup(0x1003), Some(rsp(8)));
    assert_eq!(table.lookup(0x100f), Some(rsp(16)));
    assert_eq!(table.lookup(0x1010), Some(rsp(8)));
    assert_eq!(table.lookup(0x1020), None);
    assert_eq!(table.lookup(0x1500), None);
    assert_eq!(table.lookup(0x2500), Some(rsp(8)));
    assert_eq!(table.lookup(0x3000), Some(rsp(24)));
    assert_eq!(table.lookup(0x3800), None);
    let compact = CompactTable::new(&table).unwrap();
    assert_eq!(compact.first_page, 1);
    assert_eq!(compact.pages.len(), 3);
    // Page 2 is inside FDE 3: one row at offset 0.
    assert_eq!(compact.pages[1].count, 2);
    assert_eq!(compact.lookup(0x2000), Some(rsp(8)));
    assert_eq!(compact.rules.len(), 4);
    assert_layouts_agree(&table);
}

#[test]
fn plt_expressions() {
    assert_eq!(plt_threshold(&[0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22]), Some(11));
    assert_eq!(plt_threshold(&[0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3a, 0x2a, 0x33, 0x24, 0x22]), Some(10));
    assert_eq!(plt_threshold(&[0x77, 8, 0x06]), None);
}

#[test]
fn refuses_non_elf() {
    assert!(matches!(build(&b"not an elf"[..]), Err(BuildError::NotElf(_))));
}
