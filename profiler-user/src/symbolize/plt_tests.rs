//! PLT stubs and symbol sizes on real files: programs gcc builds here (with
//! the classic lazy `.plt` and with IBT's `.plt.sec`), this machine's libc
//! and libpython. objdump, which names stubs from the same relocations, is
//! the reference; it must be installed (binutils, which gcc needs anyway).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::*;
use crate::addr::{ElfVaddr, FileOffset};
use crate::objfile::{debuginfo::DebugSearch, elf, plt::PltStubs};
use crate::procfs::maps::read_maps;
use crate::sys::file::PinnedFile;

/// Calls `strlen` and `write` through the PLT.
const PLT_C: &str = r#"#include <string.h>
#include <unistd.h>
volatile unsigned long sink;
int main(int argc, char **argv)
{
	for (int i = 0; i < argc * 1000; i++)
		sink += strlen(argv[0]);
	return write(1, "", 0) < 0;
}
"#;

/// A sized function followed by code no symbol covers, and a sizeless
/// function at the end of one code section followed by another section
/// without symbols.
const SIZES_C: &str = r#"__asm__(
	".text\n"
	".globl sized_fn\n.type sized_fn,@function\nsized_fn:\n\tret\n.size sized_fn,1\n"
	"\t.fill 32,1,0x90\n"
	".section aaa_code,\"ax\",@progbits\n"
	".globl bare_fn\n.type bare_fn,@function\nbare_fn:\n\t.fill 16,1,0x90\n\tret\n"
	".section bbb_code,\"ax\",@progbits\n"
	"\t.fill 64,1,0x90\n\tret\n"
	".text\n");
int main(void) { return 0; }
"#;

/// Compiles `source` with `flags` into `dir/name`; the compiler must work.
fn gcc(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).expect("write source");
    let out = dir.join(name);
    let status = Command::new("gcc").args(flags).arg("-o").arg(&out).arg(&src).status();
    assert!(status.as_ref().is_ok_and(|s| s.success()), "gcc {flags:?} failed: {status:?}");
    out
}

/// objdump's PLT stubs of `path`: start address → `name@plt`.
fn objdump_stubs(path: &Path) -> BTreeMap<u64, String> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-j", ".plt", "-j", ".plt.sec", "-j", ".plt.got"])
        .arg(path)
        .output()
        .expect("run objdump (binutils)");
    assert!(out.status.success(), "objdump failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            // `0000000000001030 <strlen@plt>:`
            let (addr, rest) = l.split_once(" <")?;
            let name = rest.strip_suffix(">:")?;
            name.ends_with("@plt").then(|| Some((u64::from_str_radix(addr, 16).ok()?, name.to_owned())))?
        })
        .collect()
}

/// Our stubs of `path`: start address → name.
fn our_stubs(path: &Path) -> BTreeMap<u64, String> {
    let data = std::fs::read(path).expect("read");
    let stubs = PltStubs::parse(&data).unwrap_or_else(|| panic!("`{}` has no PLT", path.display()));
    stubs.stubs().map(|(start, _, name)| (start, name.to_owned())).collect()
}

/// Compares with objdump: every stub objdump names from a symbol must have
/// the same name here; those it can only call `*ABS*+0x…@plt` (ifuncs
/// called inside their library) must be named too. Returns how many.
fn assert_same_as_objdump(path: &Path) -> usize {
    let theirs = objdump_stubs(path);
    let ours = our_stubs(path);
    assert!(!theirs.is_empty(), "objdump found no stubs in `{}`", path.display());
    for (addr, name) in &theirs {
        let mine = ours.get(addr).unwrap_or_else(|| panic!("no stub at {addr:#x} ({name}) in `{}`", path.display()));
        if name.starts_with("*ABS*") {
            assert!(mine.ends_with("@plt") && !mine.starts_with('*'), "{addr:#x}: {mine} for {name}");
        } else {
            // objdump keeps a symbol version (`memcpy@GLIBC_2.14@plt`) that
            // `.dynsym`'s names do not carry.
            let plain = name.split('@').next().unwrap_or(name);
            assert_eq!(mine, &format!("{plain}@plt"), "stub at {addr:#x} of `{}`", path.display());
        }
    }
    theirs.len()
}

/// Symbolizes file offsets of `binary` through a fresh object cache.
fn symbolize_file(binary: &Path, offsets: &[FileOffset]) -> Vec<Option<Vec<Line>>> {
    let pin = Arc::new(PinnedFile::from_file(std::fs::File::open(binary).expect("open")).expect("stat"));
    let mut cache = ObjectCache::new(CacheBudget::default());
    let search = DebugSearch { process_root: None, binary_path: "x", extra_dirs: &[] };
    let id = cache.insert(pin, &search);
    let blaze = Blaze(BlazeSymbolizer::builder().set_debug_dirs(Some(Vec::<PathBuf>::new())).build());
    cache.symbolize(&blaze, id, offsets)
}

/// File offsets of every byte of the sections called `names`.
fn section_offsets(path: &Path, names: &[&str]) -> Vec<(String, FileOffset)> {
    use object::{Object as _, ObjectSection as _};
    let data = std::fs::read(path).expect("read");
    let file = object::File::parse(data.as_slice()).expect("ELF");
    let mut out = Vec::new();
    for section in file.sections() {
        let name = section.name().unwrap_or_default();
        if names.contains(&name) {
            let (start, len) = section.file_range().expect("in the file");
            out.extend((start..start + len).map(|o| (name.to_owned(), FileOffset::new(o))));
        }
    }
    out
}

fn function(lines: &Option<Vec<Line>>) -> Option<&str> {
    lines.as_ref().and_then(|l| l.last()).map(|l| l.function.as_str())
}

/// Every address of the PLT sections of `binary` is a named stub or
/// unnamed, never the symbol before the PLT; returns the names seen.
fn assert_plt_named(binary: &Path) -> Vec<String> {
    let offsets = section_offsets(binary, &[".plt", ".plt.sec", ".plt.got"]);
    assert!(!offsets.is_empty(), "`{}` has no PLT", binary.display());
    let plain: Vec<FileOffset> = offsets.iter().map(|&(_, o)| o).collect();
    let results = symbolize_file(binary, &plain);
    let mut names: Vec<String> = Vec::new();
    for ((section, offset), lines) in offsets.iter().zip(&results) {
        if let Some(name) = function(lines) {
            assert!(name.ends_with("@plt"), "{section}+{offset:#x} of `{}` is named {name}", binary.display());
            names.push(name.to_owned());
        }
    }
    names.dedup();
    names
}

#[test]
fn plt_stubs_of_a_built_program_are_named_after_their_callees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = gcc(dir.path(), "plt", PLT_C, &["-O2", "-g", "-fno-builtin"]);
    assert!(assert_same_as_objdump(&binary) >= 2);
    let names = assert_plt_named(&binary);
    for want in ["strlen@plt", "write@plt"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    // `main` is still named from DWARF.
    let text = section_offsets(&binary, &[".text"]);
    let results = symbolize_file(&binary, &text.iter().map(|&(_, o)| o).collect::<Vec<_>>());
    assert!(results.iter().any(|l| function(l) == Some("main")));
}

#[test]
fn plt_sec_stubs_under_ibt_follow_their_relocations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary =
        gcc(dir.path(), "plt_ibt", PLT_C, &["-O2", "-g", "-fno-builtin", "-fcf-protection=full", "-Wl,-z,ibtplt"]);
    assert!(!section_offsets(&binary, &[".plt.sec"]).is_empty(), "no .plt.sec: the IBT layout was not built");
    assert!(assert_same_as_objdump(&binary) >= 2);
    let names = assert_plt_named(&binary);
    for want in ["strlen@plt", "write@plt"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
}

/// Shared libraries mapped by this test process, and the system libpython
/// when installed: what a profile of a Python service holds.
fn system_libraries() -> Vec<PathBuf> {
    let maps = read_maps(Pid::new(std::process::id())).expect("own maps");
    let mut libs: Vec<PathBuf> =
        maps.iter().filter(|m| m.is_file() && m.path.contains("/libc.so")).map(|m| PathBuf::from(&m.path)).collect();
    libs.dedup();
    assert!(!libs.is_empty(), "this process maps no libc");
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("libpython3") && name.contains(".so.") && !entry.path().is_symlink() {
                libs.push(entry.path());
            }
        }
    }
    libs
}

#[test]
fn plt_stubs_of_system_libraries_match_objdump() {
    for lib in system_libraries() {
        let n = assert_same_as_objdump(&lib);
        let names = assert_plt_named(&lib);
        eprintln!("{}: {n} stubs, {} named addresses", lib.display(), names.len());
    }
}

#[test]
fn sizes_and_sections_bound_symbols() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = gcc(dir.path(), "sizes", SIZES_C, &["-O0"]);
    let data = std::fs::read(&binary).expect("read");
    let info = elf::ElfInfo::parse(&data).expect("ELF");
    let file = object::File::parse(data.as_slice()).expect("ELF");
    let vaddr_of = |name: &str| {
        use object::{Object as _, ObjectSymbol as _};
        file.symbols().find(|s| s.name() == Ok(name)).map(|s| s.address()).expect("symbol")
    };
    let offset = |vaddr: u64| info.vaddr_to_file_offset(ElfVaddr::new(vaddr)).expect("in a segment");
    let sized = vaddr_of("sized_fn");
    let bare = vaddr_of("bare_fn");
    let (bbb_start, bbb_end) = {
        use object::{Object as _, ObjectSection as _};
        let s = file.section_by_name("bbb_code").expect("bbb_code");
        (s.address(), s.address() + s.size())
    };
    // The layout the test relies on: `bare_fn` is the last symbol before `bbb_code`.
    assert!(bare < bbb_start, "aaa_code must come before bbb_code");
    {
        use object::{Object as _, ObjectSymbol as _};
        assert!(
            !file.symbols().any(|s| s.address() > bare && s.address() < bbb_end),
            "a symbol lies between bare_fn and the end of bbb_code"
        );
    }
    let probes = [sized, sized + 8, bare + 8, bbb_start + 8];
    let results = symbolize_file(&binary, &probes.map(offset));
    let names: Vec<Option<&str>> = results.iter().map(function).collect();
    assert_eq!(
        names,
        [Some("sized_fn"), None, Some("bare_fn"), None],
        "past a sized symbol's end, and past a sizeless one's section, nothing may be named"
    );
}
