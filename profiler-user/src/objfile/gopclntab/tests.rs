//! Tests of the `.gopclntab` reader: hand-built tables in every layout
//! (only Go 1.18's can be produced by the local toolchain), real binaries
//! built by the local `go` (stripped and not, compared with their DWARF),
//! and whatever newer Go binaries the host happens to have.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::objfile::elf::ElfInfo;

// ---------------------------------------------------------------------------
// Hand-built tables

const TEXT: u64 = 0x40_1000;
const DATA: u64 = 0x50_0000;
const DATA_OFF: usize = 0x2000;
/// `go:func.*` in the synthetic image, and the inline tree within it.
const GOFUNC: u64 = DATA + 0x1000;
const TREE_IN_GOFUNC: u64 = 0x10;
const MODULEDATA: usize = DATA_OFF + 0x2000;

/// A pc-value table: `(value, until)` runs with pc offsets from the entry.
fn pcvalue_table(runs: &[(i32, u64)], quantum: u64) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let (mut out, mut value, mut pc) = (Vec::new(), -1i32, 0u64);
    for &(v, until) in runs {
        let delta = v - value;
        varint(&mut out, ((delta << 1) ^ (delta >> 31)) as u32);
        varint(&mut out, ((until - pc) / quantum) as u32);
        (value, pc) = (v, until);
    }
    out.push(0);
    out
}

fn put(buf: &mut Vec<u8>, off: usize, bytes: &[u8]) {
    if buf.len() < off + bytes.len() {
        buf.resize(off + bytes.len(), 0);
    }
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

/// Two functions: `main.outer` (0x100 bytes) with `main.helper` inlined at
/// +0x40..+0x60 (util.go:20, called from main.go:11 at +0x20), and
/// `main.other` (main.go:30).
fn synthetic(version: GoVersion) -> (Vec<u8>, TableLocation, Vec<Segment>) {
    let v12 = version == GoVersion::V12;
    let ptr = 8usize;
    let mut t = Vec::new(); // the table
    let header_words = match version {
        GoVersion::V118 | GoVersion::V120 => 8,
        GoVersion::V116 => 7,
        GoVersion::V12 => 1,
    };
    let magic: u32 = match version {
        GoVersion::V12 => 0xffff_fffb,
        GoVersion::V116 => 0xffff_fffa,
        GoVersion::V118 => 0xffff_fff0,
        GoVersion::V120 => 0xffff_fff1,
    };
    put(&mut t, 0, &magic.to_le_bytes());
    put(&mut t, 4, &[0, 0, 1, ptr as u8]);
    let mut cursor = 8 + header_words * ptr;
    // Go 1.2 has no header words but the function count: the functab
    // (2n+1 pointer-sized fields) and the file table's offset follow it.
    if v12 {
        cursor = 8 + ptr + 5 * ptr + 4;
    }
    // Regions: names, CU table, file names, pc tables.
    let mut names = Vec::new();
    let mut name_off = |s: &str| {
        let off = names.len() as u32;
        names.extend_from_slice(s.as_bytes());
        names.push(0);
        off
    };
    let (outer, helper, other) = (name_off("main.outer"), name_off("main.helper"), name_off("main.other"));
    let funcnames = cursor;
    put(&mut t, funcnames, &names);
    cursor += names.len();
    let filenames = b"/src/main.go\0/src/util.go\0";
    let cutab = cursor;
    put(&mut t, cutab, &[0u32.to_le_bytes(), 13u32.to_le_bytes()].concat());
    cursor += 8;
    let filetab = cursor;
    put(&mut t, filetab, filenames);
    cursor += filenames.len();
    // Go 1.2: file numbers index a table of offsets from the table start.
    let v12_files = cursor.next_multiple_of(4);
    if v12 {
        let (main, util) = (filetab as u32, filetab as u32 + 13);
        put(&mut t, v12_files, &[3u32.to_le_bytes(), main.to_le_bytes(), util.to_le_bytes()].concat());
        cursor = v12_files + 12;
    }
    let file_base = if v12 { 1 } else { 0 };
    let pctab = cursor;
    let mut pcs = vec![0u8]; // offset 0 means "no table"
    let mut add_table = |runs: &[(i32, u64)]| {
        let off = pcs.len() as u32;
        pcs.extend(pcvalue_table(runs, 1));
        off
    };
    // Go 1.2 pc-table offsets count from the table's start.
    let pcbase = if v12 { pctab as u32 } else { 0 };
    let outer_file = add_table(&[(file_base, 0x40), (file_base + 1, 0x60), (file_base, 0x100)]);
    let outer_line = add_table(&[(10, 0x10), (11, 0x40), (20, 0x60), (12, 0x100)]);
    let outer_inl = add_table(&[(-1, 0x40), (0, 0x60), (-1, 0x100)]);
    let other_file = add_table(&[(file_base, 0x100)]);
    let other_line = add_table(&[(30, 0x100)]);
    put(&mut t, pctab, &pcs);
    cursor += pcs.len();
    // The function region: functab, then the `_func` records.
    let functab = if v12 { 8 + ptr } else { cursor.next_multiple_of(8) };
    let field = if version >= GoVersion::V118 { 4 } else { ptr };
    let mut func_at = if v12 { cursor } else { functab + 5 * field };
    let mut records = Vec::new();
    for (i, (name, pcfile, pcln, inl)) in
        [(outer, outer_file, outer_line, Some(outer_inl)), (other, other_file, other_line, None)]
            .into_iter()
            .enumerate()
    {
        func_at = func_at.next_multiple_of(8);
        let entry = TEXT + 0x100 * i as u64;
        let mut rec = Vec::new();
        if version >= GoVersion::V118 {
            rec.extend(((entry - TEXT) as u32).to_le_bytes());
        } else {
            rec.extend(entry.to_le_bytes());
        }
        let name = if v12 { name + funcnames as u32 } else { name };
        let npcdata = if inl.is_some() { 3u32 } else { 0 };
        for w in [name, 0, 0, 0, pcfile + pcbase, pcln + pcbase, npcdata] {
            rec.extend(w.to_le_bytes());
        }
        if !v12 {
            rec.extend(0u32.to_le_bytes()); // cuOffset
        }
        if version == GoVersion::V120 {
            rec.extend(9u32.to_le_bytes()); // startLine
        }
        let nfuncdata = if inl.is_some() { 4u8 } else { 0 };
        rec.extend([0, 0, 0, nfuncdata]);
        if let Some(inl) = inl {
            for w in [0, 0, inl + pcbase] {
                rec.extend(w.to_le_bytes());
            }
            if version >= GoVersion::V118 {
                for w in [u32::MAX, u32::MAX, u32::MAX, TREE_IN_GOFUNC as u32] {
                    rec.extend(w.to_le_bytes());
                }
            } else {
                if rec.len() % 8 != 0 {
                    rec.extend([0; 4]);
                }
                for w in [0, 0, 0, GOFUNC + TREE_IN_GOFUNC] {
                    rec.extend(w.to_le_bytes());
                }
            }
        }
        let funcoff = if v12 { func_at } else { func_at - functab };
        let slot = functab + 2 * i * field;
        if field == 4 {
            put(&mut t, slot, &((entry - TEXT) as u32).to_le_bytes());
            put(&mut t, slot + 4, &(funcoff as u32).to_le_bytes());
        } else {
            put(&mut t, slot, &entry.to_le_bytes());
            put(&mut t, slot + 8, &(funcoff as u64).to_le_bytes());
        }
        records.push((func_at, rec.clone()));
        func_at += rec.len();
    }
    let end = TEXT + 0x200;
    if field == 4 {
        put(&mut t, functab + 4 * field, &((end - TEXT) as u32).to_le_bytes());
    } else {
        put(&mut t, functab + 4 * field, &end.to_le_bytes());
    }
    if v12 {
        put(&mut t, functab + 5 * field, &(v12_files as u32).to_le_bytes());
    }
    for (at, rec) in records {
        put(&mut t, at, &rec);
    }
    // Header words.
    let words: Vec<u64> = match version {
        GoVersion::V118 | GoVersion::V120 => {
            vec![2, 2, TEXT, funcnames as u64, cutab as u64, filetab as u64, pctab as u64, functab as u64]
        }
        GoVersion::V116 => vec![2, 2, funcnames as u64, cutab as u64, filetab as u64, pctab as u64, functab as u64],
        GoVersion::V12 => vec![2],
    };
    for (i, w) in words.iter().enumerate() {
        put(&mut t, 8 + i * ptr, &w.to_le_bytes());
    }
    assert!(t.len() < 0x1000, "synthetic table too large");
    assert!(v12 || functab >= cursor, "regions overlap");

    // The file image: text at 0x1000, data (table, go:func.*, moduledata) at 0x2000.
    let mut image = vec![0u8; DATA_OFF + 0x3000];
    image[0x1000..0x1004].copy_from_slice(&[0xcc; 4]);
    put(&mut image, DATA_OFF, &t);
    let tree_at = (GOFUNC - DATA) as usize + DATA_OFF + TREE_IN_GOFUNC as usize;
    let record: Vec<u8> = match version {
        GoVersion::V120 => [0u32, helper, 0x20, 19].iter().flat_map(|w| w.to_le_bytes()).collect(),
        _ => [
            &(-1i16).to_le_bytes()[..],
            &[0, 0],
            &1i32.to_le_bytes(),
            &11i32.to_le_bytes(),
            &helper.to_le_bytes(),
            &0x20u32.to_le_bytes(),
        ]
        .concat(),
    };
    put(&mut image, tree_at, &record);
    let md_words: [(usize, u64); 5] = [
        (0, DATA),
        (1, DATA + funcnames as u64),
        (4, DATA + cutab as u64),
        (22, TEXT),
        (if version == GoVersion::V120 { 40 } else { 38 }, GOFUNC),
    ];
    for (slot, w) in md_words {
        put(&mut image, MODULEDATA + slot * 8, &w.to_le_bytes());
    }
    let segments = vec![
        Segment { vaddr: TEXT, offset: 0x1000, filesz: 0x1000, exec: true },
        Segment { vaddr: DATA, offset: DATA_OFF as u64, filesz: 0x3000, exec: false },
    ];
    (image, TableLocation { offset: DATA_OFF, len: t.len(), vaddr: DATA }, segments)
}

fn frame(function: &str, file: &str, line: u32) -> GoFrame {
    GoFrame { function: function.into(), file: Some(file.into()), line: Some(line) }
}

#[test]
fn reads_every_layout_with_inline_trees() {
    for version in [GoVersion::V12, GoVersion::V116, GoVersion::V118, GoVersion::V120] {
        let (image, loc, segments) = synthetic(version);
        let table = GoTable::new(image.as_slice(), loc, segments.clone()).expect("parses");
        assert_eq!(table.version(), version);
        assert_eq!(table.func_count(), 2);
        assert_eq!(table.function(1), Some((TEXT + 0x100, "main.other".to_owned())), "{version:?}");
        assert_eq!(table.find(ElfVaddr::new(TEXT)), Some(vec![frame("main.outer", "/src/main.go", 10)]), "{version:?}");
        assert_eq!(table.find(ElfVaddr::new(TEXT + 0x3f)), Some(vec![frame("main.outer", "/src/main.go", 11)]));
        assert_eq!(table.find(ElfVaddr::new(TEXT + 0x1ff)), Some(vec![frame("main.other", "/src/main.go", 30)]));
        assert_eq!(table.find(ElfVaddr::new(TEXT - 1)), None);
        assert_eq!(table.find(ElfVaddr::new(TEXT + 0x200)), None);
        let inlined = table.find(ElfVaddr::new(TEXT + 0x45)).expect("inside the inlined call");
        if version == GoVersion::V12 {
            // Go 1.2–1.15 inline trees are not read: the outer function
            // keeps the inlined body's position.
            assert_eq!(inlined, vec![frame("main.outer", "/src/util.go", 20)]);
            assert_eq!(table.funcdata_base(), FuncDataBase::Unavailable);
        } else {
            assert_eq!(
                inlined,
                vec![frame("main.helper", "/src/util.go", 20), frame("main.outer", "/src/main.go", 11)],
                "{version:?}"
            );
        }
        if version >= GoVersion::V118 {
            assert_eq!(table.funcdata_base(), FuncDataBase::GoFunc(GOFUNC));
        }
        // Fully stripped: found by its header alone.
        assert_eq!(scan_for_table(&image, &segments), Some(TableLocation { len: 0x3000, ..loc }));
    }
}

#[test]
fn wrong_gofunc_disables_inline_trees_only() {
    let (mut image, loc, segments) = synthetic(GoVersion::V120);
    // A moduledata layout this reader does not know: gofunc elsewhere.
    put(&mut image, MODULEDATA + 40 * 8, &(DATA + 0x2f00).to_le_bytes());
    put(&mut image, DATA_OFF + 0x2f00, &[0x5a; 0x40]);
    let table = GoTable::new(image.as_slice(), loc, segments.clone()).expect("parses");
    assert_eq!(table.funcdata_base(), FuncDataBase::Unavailable);
    // Zeros are no better: a zeroed record names the first function.
    put(&mut image, DATA_OFF + 0x2f00, &[0; 0x40]);
    let table = GoTable::new(image.as_slice(), loc, segments).expect("parses");
    assert_eq!(table.funcdata_base(), FuncDataBase::Unavailable);
    assert_eq!(table.find(ElfVaddr::new(TEXT + 0x45)), Some(vec![frame("main.outer", "/src/util.go", 20)]));
}

#[test]
fn rejects_corrupt_headers_and_tables() {
    let (image, loc, segments) = synthetic(GoVersion::V118);
    for (at, byte) in [(DATA_OFF, 0x00), (DATA_OFF + 4, 1), (DATA_OFF + 6, 3), (DATA_OFF + 7, 2)] {
        let mut bad = image.clone();
        bad[at] = byte;
        assert!(GoTable::new(bad.as_slice(), loc, segments.clone()).is_none(), "byte {at:#x} = {byte}");
    }
    // Truncated: the functab no longer fits.
    assert!(GoTable::new(image.as_slice(), TableLocation { len: 100, ..loc }, segments.clone()).is_none());
    // Truncated pc tables and names yield no frames rather than garbage.
    let mut bad = image.clone();
    bad[DATA_OFF + 8 + 8 * 8..DATA_OFF + 0x100].fill(0xff);
    if let Some(table) = GoTable::new(bad.as_slice(), loc, segments) {
        for pc in TEXT..TEXT + 0x200 {
            let _ = table.find(ElfVaddr::new(pc));
        }
    }
}

#[test]
fn varints_and_strings_are_bounded() {
    let mut p = 0;
    assert_eq!(read_varint(&[0xe5, 0x8e, 0x26], &mut p), Some(624_485));
    assert_eq!(p, 3);
    let mut p = 0;
    assert_eq!(read_varint(&[0x80, 0x80], &mut p), None);
    let mut p = 0;
    assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut p), None);
    assert_eq!(read_cstr(b"abc\0def", 0), Some("abc"));
    assert_eq!(read_cstr(b"abc", 0), None);
    assert_eq!(read_cstr(b"abc\0", 9), None);
}

// ---------------------------------------------------------------------------
// Real binaries

/// The source of a Go program with a function inlined into a hot loop.
pub(crate) const INLINE_GO: &str = "package main

import \"os\"

func step(x uint64) uint64 {
\treturn x*6364136223846793005 + 1442695040888963407 // STEP
}

//go:noinline
func hot(n int, x uint64) uint64 {
\tfor i := 0; i < n; i++ {
\t\tx = step(x) // CALL
\t}
\treturn x
}

func main() {
\tif hot(len(os.Args)*1000, 7) == 0 {
\t\tos.Exit(1)
\t}
}
";

/// Builds a Go program from `source` into a fresh temp dir with extra
/// `go build` args; `None` (with a note) when Go is not installed.
pub(crate) fn build_go(source: &str, args: &[&str]) -> Option<(tempfile::TempDir, PathBuf)> {
    build_go_with(source, args, false)
}

/// [`build_go`], optionally with cgo (and so able to link externally).
pub(crate) fn build_go_with(source: &str, args: &[&str], cgo: bool) -> Option<(tempfile::TempDir, PathBuf)> {
    if Command::new("go").arg("version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("note: `go` is not installed; skipping (cargo xtask setup installs it)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("main.go"), source).expect("write main.go");
    std::fs::write(dir.path().join("go.mod"), "module inl\n\ngo 1.16\n").expect("write go.mod");
    let out = dir.path().join("prog");
    let status = Command::new("go")
        .arg("build")
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(dir.path())
        .env("GOCACHE", dir.path().join("cache"))
        .env("GOPATH", dir.path().join("gopath"))
        .env("GOFLAGS", "-buildvcs=false")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .status()
        .expect("run go build");
    assert!(status.success(), "go build failed");
    Some((dir, out))
}

fn line_of(source: &str, marker: &str) -> u32 {
    source.lines().position(|l| l.contains(marker)).expect("marker") as u32 + 1
}

fn table_of(path: &Path) -> (GoTable<Vec<u8>>, ElfInfo) {
    let data = std::fs::read(path).expect("read binary");
    let info = ElfInfo::parse(&data).expect("ELF");
    let loc = info.gopclntab.or_else(|| scan_for_table(&data, &info.segments)).expect("a Go table");
    (GoTable::new(data, loc, info.segments.clone()).expect("parses"), info)
}

#[test]
fn stripped_go_binary_names_inlined_frames() {
    let Some((_dir, prog)) = build_go(INLINE_GO, &["-ldflags=-s -w"]) else { return };
    let (table, info) = table_of(&prog);
    assert!(!info.has_symtab && !info.has_dwarf, "built stripped");
    assert!(table.version() >= GoVersion::V118);
    assert!(matches!(table.funcdata_base(), FuncDataBase::GoFunc(_)), "moduledata found");
    let hot = (0..table.func_count()).find_map(|i| table.function(i).filter(|(_, n)| n == "main.hot"));
    let (entry, _) = hot.expect("main.hot in the table");
    let (step_line, call_line) = (line_of(INLINE_GO, "// STEP"), line_of(INLINE_GO, "// CALL"));
    let expected = vec![
        GoFrame { function: "main.step".into(), file: None, line: Some(step_line) },
        GoFrame { function: "main.hot".into(), file: None, line: Some(call_line) },
    ];
    let found = (entry..entry + 0x100).filter_map(|pc| table.find(ElfVaddr::new(pc))).find(|frames| {
        let names: Vec<_> = frames.iter().map(|f| GoFrame { file: None, ..f.clone() }).collect();
        names == expected
    });
    let frames = found.expect("an address inside main.step inlined into main.hot");
    assert!(frames.iter().all(|f| f.file.as_deref().is_some_and(|p| p.ends_with("/main.go"))), "{frames:?}");
}

/// The runtime's table elides array lengths and type arguments in names
/// (`[5]T` is stored as `[...]T`).
fn runtime_spelling(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0;
    for c in name.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push_str("[...]");
                }
                depth += 1;
            }
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// An externally linked PIE (cgo's usual build) has no `.gopclntab`
/// section: the linker merges the table into `.data.rel.ro`, where it is
/// found by its header.
#[test]
fn finds_the_table_of_an_externally_linked_pie_by_magic() {
    let args = ["-buildmode=pie", "-ldflags=-s -w -linkmode=external"];
    let Some((_dir, prog)) = build_go_with(INLINE_GO, &args, true) else { return };
    let data = std::fs::read(&prog).expect("read");
    let info = ElfInfo::parse(&data).expect("ELF");
    assert!(info.gopclntab.is_none() && info.maybe_go, "no table section, Go note: {info:?}");
    let (table, _) = table_of(&prog);
    assert!(matches!(table.funcdata_base(), FuncDataBase::GoFunc(_)), "moduledata found");
    let hot = (0..table.func_count()).find_map(|i| table.function(i).filter(|(_, n)| n == "main.hot"));
    let (entry, _) = hot.expect("main.hot");
    let inlined = (entry..entry + 0x100)
        .filter_map(|pc| table.find(ElfVaddr::new(pc)))
        .any(|f| f.len() == 2 && f[0].function == "main.step");
    assert!(inlined, "main.step inlined into main.hot");
}

/// Every function of a real table agrees with the unstripped build's
/// `.symtab`, and file:line (and inline chains) with its DWARF, as
/// blazesym reads it.
#[test]
fn go_table_agrees_with_symtab_and_dwarf() {
    use blazesym::symbolize::{source::Elf, Input, Symbolizer};
    use object::{Object as _, ObjectSymbol as _};

    let Some((_dir, prog)) = build_go(INLINE_GO, &[]) else { return };
    let (table, _) = table_of(&prog);
    let data = std::fs::read(&prog).expect("read");
    let file = object::File::parse(data.as_slice()).expect("ELF");
    // The linker suffixes assembly functions' symbols with their ABI.
    let mut symtab: std::collections::HashMap<u64, Vec<String>> = std::collections::HashMap::new();
    for s in file.symbols() {
        if let Ok(name) = s.name() {
            symtab.entry(s.address()).or_default().push(runtime_spelling(name.trim_end_matches(".abi0")));
        }
    }
    let mut pcs = Vec::new();
    for i in 0..table.func_count() {
        let (entry, name) = table.function(i).expect("function");
        let names = symtab.get(&entry).cloned().unwrap_or_default();
        assert!(names.contains(&name), "function {i} at {entry:#x}: {name} not in {names:?}");
        if name.starts_with("main.") || name.starts_with("runtime.mallocgc") || name.starts_with("strconv.") {
            let end = table.entry(i + 1).expect("end");
            pcs.extend((entry..end).step_by(3));
        }
    }
    let symbolizer = Symbolizer::builder().enable_code_info(true).enable_inlined_fns(true).build();
    let src = blazesym::symbolize::source::Source::Elf(Elf::new(&prog));
    let dwarf = symbolizer.symbolize(&src, Input::VirtOffset(&pcs)).expect("symbolize");
    let (mut compared, mut differ) = (0, Vec::new());
    for (pc, sym) in pcs.iter().zip(&dwarf) {
        let (Some(sym), Some(frames)) = (sym.as_sym(), table.find(ElfVaddr::new(*pc))) else { continue };
        let mut names: Vec<String> = sym.inlined.iter().rev().map(|f| f.name.to_string()).collect();
        names.push(sym.name.to_string());
        let ours: Vec<String> = frames.iter().map(|f| f.function.clone()).collect();
        let line =
            sym.inlined.last().and_then(|f| f.code_info.as_ref()).or(sym.code_info.as_deref()).and_then(|c| c.line);
        compared += 1;
        if names != ours || line != frames[0].line {
            differ.push(format!("{pc:#x}: dwarf {names:?}:{line:?} vs {ours:?}:{:?}", frames[0].line));
        }
    }
    assert!(compared > 500, "too few addresses compared: {compared}");
    // DWARF and the runtime's table are written from the same compiler
    // positions; allow a sliver for prologue/epilogue attribution.
    assert!(differ.len() * 100 <= compared, "{} of {compared} differ:\n{}", differ.len(), differ.join("\n"));
}

/// Stripped binaries by newer Go releases that some hosts carry (Go 1.21+
/// write the 1.20 layout). Their `moduledata` layout and inline records
/// must decode; nothing is asserted when none is present.
#[test]
fn reads_newer_go_binaries_on_this_host() {
    let candidates = [
        "/usr/local/bin/docker",
        "/usr/local/bin/terraform",
        "/usr/lib/google-cloud-sdk/bin/kpt",
        "/usr/lib/google-cloud-sdk/bin/gcloud-crc32c",
        "/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator",
    ];
    let mut seen = 0;
    for path in candidates.iter().map(Path::new).filter(|p| p.is_file()) {
        let (table, _) = table_of(path);
        seen += 1;
        assert_eq!(table.version(), GoVersion::V120, "{}", path.display());
        assert!(matches!(table.funcdata_base(), FuncDataBase::GoFunc(_)), "{}: moduledata", path.display());
        let main = (0..table.func_count()).find_map(|i| table.function(i).filter(|(_, n)| n == "main.main"));
        let (entry, _) = main.unwrap_or_else(|| panic!("{}: no main.main", path.display()));
        let frames = table.find(ElfVaddr::new(entry)).expect("main.main resolves");
        assert_eq!(frames.last().map(|f| f.function.as_str()), Some("main.main"));
        assert!(frames[0].file.as_deref().is_some_and(|f| f.ends_with(".go")), "{frames:?}");
        // Inlined frames somewhere in the runtime, with sane names.
        let inlined = (0..table.func_count().min(3000))
            .filter_map(|i| table.function(i))
            .filter_map(|(entry, _)| {
                (entry..entry + 64).find_map(|pc| table.find(ElfVaddr::new(pc)).filter(|f| f.len() > 1))
            })
            .count();
        assert!(inlined > 10, "{}: only {inlined} functions with inlined frames", path.display());
    }
    if seen == 0 {
        eprintln!("note: no Go 1.20+ binaries on this host; covered by the synthetic tables");
    }
}
