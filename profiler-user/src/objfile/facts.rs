//! Whether the stacks through one object file can be walked and named:
//! does its code keep frame pointers, does it carry unwind tables, symbols
//! and debug info. `doctor --pid` reports these for a target, and the stack
//! quality of a capture uses them to say *why* its stacks are short or
//! unnamed and what to change.
//!
//! Frame pointers leave no flag in a file, so they are read from the code:
//! a function built with them starts with `push %rbp; mov %rsp,%rbp`
//! (after an `endbr64`, and after Go's stack-bound check). A file is judged
//! by the share of its functions that do; a build without them still has a
//! few (functions that need `%rbp` for a variable-sized frame), a build with
//! them has nearly all. Go binaries always keep frame pointers on x86-64
//! and arm64 (the Go ABI requires them since Go 1.7).

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

use super::elf::ElfInfo;

/// Functions looked at, at most: enough for a stable share, quick on a
/// 100 MiB binary.
const SAMPLED_FUNCTIONS: usize = 4000;

/// At or above this share of functions with a frame-pointer prologue, a
/// file is built with frame pointers. Measured: C `-O2` and Rust release
/// builds 0–10 %, `-fno-omit-frame-pointer` and `-C force-frame-pointers`
/// builds 85–100 % (leaf functions and thunks make up the rest).
const FRAME_POINTER_SHARE: f64 = 0.5;

/// Functions the C runtime links into every executable (`crt1.o`,
/// `crtbegin.o`), built the distribution's way whatever the program's
/// flags: counting them would dilute a small program's share.
const STARTUP: &[&str] = &[
    "_start",
    "_init",
    "_fini",
    "deregister_tm_clones",
    "register_tm_clones",
    "__do_global_dtors_aux",
    "frame_dummy",
    "__libc_csu_init",
    "__libc_csu_fini",
    "_dl_relocate_static_pie",
];

/// What an object file offers an unwinder and a symbolizer.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ObjectFacts {
    /// Share of the functions looked at that set up a frame pointer;
    /// `None` when no function could be found (no symbols at all).
    pub frame_pointer_share: Option<f64>,
    /// A Go binary (Go's build info or function table).
    pub go_version: Option<String>,
    pub is_go: bool,
    /// Rust code (its standard library's symbols).
    pub is_rust: bool,
    /// `.eh_frame` with entries: what a table unwinder walks.
    pub eh_frame: bool,
    /// `.debug_frame`: unwind tables kept with the debug info.
    pub debug_frame: bool,
    /// A full symbol table (`.symtab`); a stripped file has only `.dynsym`.
    pub symtab: bool,
    /// Exported symbols only (`.dynsym` entries that name functions).
    pub dynsym_functions: usize,
    /// DWARF `.debug_info`: file and line, inlined frames.
    pub debug_info: bool,
    pub build_id: Option<String>,
    /// `.gnu_debuglink`: the name of a separate debug file.
    pub debuglink: Option<String>,
}

impl ObjectFacts {
    /// Reads the facts of the ELF image `data`; `None` if it is not ELF.
    #[cfg(test)]
    pub(crate) fn of(data: &[u8]) -> Option<Self> {
        Self::of_file(data, None)
    }

    /// [`Self::of`] of a file mapped at `data`: the code of the functions
    /// sampled for frame pointers is read from `file` with `pread` rather
    /// than through the mapping. Reading 4000 functions spread over the
    /// code through a mapping maps every page of it (a fault maps a whole
    /// folio): 6.9 MiB of stackwatch's own 8 MiB of code at the peak of a
    /// whole-host capture, for 128 KiB of reads.
    pub(crate) fn of_file(data: &[u8], code_file: Option<&std::fs::File>) -> Option<Self> {
        let info = ElfInfo::parse(data)?;
        let file = object::File::parse(data).ok()?;
        let nonempty = |name: &str| file.section_by_name(name).is_some_and(|s| s.size() > 8);
        let go_version = super::go::go_version(data);
        let is_go = go_version.is_some() || info.gopclntab.is_some() || info.maybe_go;
        let dynsym_functions = file.dynamic_symbols().filter(|s| s.kind() == SymbolKind::Text && s.size() > 0).count();
        let is_rust = file.symbols().chain(file.dynamic_symbols()).take(200_000).any(|s| {
            s.name().is_ok_and(|n| n == "rust_begin_unwind" || n.starts_with("_ZN3std") || n.starts_with("_RNv"))
        });
        Some(Self {
            is_rust,
            frame_pointer_share: if is_go { Some(1.0) } else { frame_pointer_share(&file, code_file) },
            go_version,
            is_go,
            eh_frame: nonempty(".eh_frame"),
            debug_frame: nonempty(".debug_frame"),
            symtab: info.has_symtab,
            dynsym_functions,
            debug_info: info.has_dwarf,
            build_id: info.build_id_hex(),
            debuglink: info.debuglink.as_ref().map(|(name, _)| name.clone()),
        })
    }

    /// Built with frame pointers (`None`: cannot tell).
    pub(crate) fn frame_pointers(&self) -> Option<bool> {
        self.frame_pointer_share.map(|s| s >= FRAME_POINTER_SHARE)
    }

    /// Has unwind tables of either kind.
    pub(crate) fn unwind_tables(&self) -> bool {
        self.eh_frame || self.debug_frame
    }
}

/// The share of sampled functions whose code starts with a frame-pointer
/// prologue, from the full symbol table or else the dynamic one.
fn frame_pointer_share(file: &object::File<'_>, code_file: Option<&std::fs::File>) -> Option<f64> {
    let mut functions: Vec<(u64, u64)> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.size() >= 8)
        .filter(|s| !s.name().is_ok_and(|n| STARTUP.contains(&n)))
        .map(|s| (s.address(), s.size()))
        .collect();
    functions.sort_unstable();
    functions.dedup_by_key(|f| f.0);
    if functions.is_empty() {
        return None;
    }
    // An even spread over the file, not its first functions (often all
    // from one library or crate).
    let step = functions.len().div_ceil(SAMPLED_FUNCTIONS).max(1);
    let (mut looked, mut with_fp) = (0u32, 0u32);
    let mut buf = [0u8; 32];
    for &(address, size) in functions.iter().step_by(step) {
        let code = match code_file {
            Some(f) => read_code_at(file, f, address, size.min(32), &mut buf),
            None => code_at(file, address, size.min(32)),
        };
        let Some(code) = code else { continue };
        looked += 1;
        with_fp += u32::from(has_frame_pointer_prologue(code));
    }
    (looked > 0).then(|| f64::from(with_fp) / f64::from(looked))
}

/// Up to `len` (≤ 32) bytes of code at `address`, read from `code_file`
/// (the file `file` was parsed from) into `buf`.
fn read_code_at<'b>(
    file: &object::File<'_>,
    code_file: &std::fs::File,
    address: u64,
    len: u64,
    buf: &'b mut [u8; 32],
) -> Option<&'b [u8]> {
    use std::os::unix::fs::FileExt as _;
    let section = section_at(file, address)?;
    let (offset, size) = section.file_range()?;
    let within = address - section.address();
    let len = len.min(size.checked_sub(within)?).min(32) as usize;
    let read = code_file.read_at(&mut buf[..len], offset + within).ok()?;
    Some(&buf[..read])
}

fn code_at<'d>(file: &object::File<'d>, address: u64, len: u64) -> Option<&'d [u8]> {
    let s = section_at(file, address)?;
    let data = s.data().ok()?;
    let start = usize::try_from(address - s.address()).ok()?;
    let end = start.saturating_add(len as usize).min(data.len());
    data.get(start..end)
}

/// The section of `file` that holds `address`.
fn section_at<'d, 'f>(file: &'f object::File<'d>, address: u64) -> Option<object::Section<'d, 'f>> {
    file.sections().find(|s| s.address() <= address && address < s.address() + s.size())
}

/// `push %rbp` and then `mov %rsp,%rbp` (either encoding: `48 89 e5`,
/// `48 8b ec`) in the first bytes of `code` (x86-64). Compilers schedule
/// other instructions between the two (gcc moves arguments first), and a
/// build without frame pointers may push `%rbp` as a callee-saved register
/// but never points it at the frame.
pub(crate) fn has_frame_pointer_prologue(code: &[u8]) -> bool {
    let code = &code[..code.len().min(32)];
    let set_up = code.windows(3).position(|w| w == [0x48, 0x89, 0xe5] || w == [0x48, 0x8b, 0xec]);
    set_up.is_some_and(|at| code[..at].contains(&0x55))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologues() {
        assert!(has_frame_pointer_prologue(&[0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10]));
        assert!(has_frame_pointer_prologue(&[0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5]));
        assert!(has_frame_pointer_prologue(&[0x55, 0x48, 0x8b, 0xec]));
        // gcc: `push %rbp; mov %edi,%eax; and $7,%eax; mov %rsp,%rbp`
        assert!(has_frame_pointer_prologue(&[0x55, 0x89, 0xf8, 0x83, 0xe0, 0x07, 0x48, 0x89, 0xe5]));
        // rbp saved as a callee-saved register, not set up as a frame pointer
        assert!(!has_frame_pointer_prologue(&[0x55, 0x53, 0x48, 0x83, 0xec, 0x18]));
        assert!(!has_frame_pointer_prologue(&[0x48, 0x83, 0xec, 0x18]));
        assert!(!has_frame_pointer_prologue(&[0xc3]));
        assert!(!has_frame_pointer_prologue(&[]));
    }

    fn compile(flags: &[&str]) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().ok()?;
        let src = dir.path().join("fp.c");
        let out = dir.path().join("fp");
        let mut code = String::from("#include <stdio.h>\n");
        for i in 0..40 {
            code.push_str(&format!("int f{i}(int x);\n"));
        }
        for i in 0..40 {
            code.push_str(&format!(
                "__attribute__((noinline)) int f{i}(int x) {{ volatile int a[8]; a[x & 7] = x; printf(\"%d\", a[1]); return a[2] + f{}(x - 1); }}\n",
                (i + 1) % 40
            ));
        }
        code.push_str("int main(int c, char **v) { (void)v; return f0(c); }\n");
        std::fs::write(&src, code).ok()?;
        let status = std::process::Command::new("cc").args(flags).arg("-o").arg(&out).arg(&src).status().ok()?;
        status.success().then(|| std::fs::read(&out).ok()).flatten()
    }

    #[test]
    fn frame_pointers_are_read_from_the_code() {
        // The tests need a C compiler (`cargo xtask setup` installs gcc).
        let with = compile(&["-O2", "-fno-omit-frame-pointer"]).expect("cc builds the test program");
        let without = compile(&["-O2", "-fomit-frame-pointer"]).expect("cc builds the test program");
        // Read through the mapping and with `pread` from the file: the
        // same code, the same shares.
        let dir = tempfile::tempdir().unwrap();
        for (name, image, fp) in [("with", &with, true), ("without", &without, false)] {
            let path = dir.path().join(name);
            std::fs::write(&path, image).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let mapped = ObjectFacts::of(image).unwrap();
            let read = ObjectFacts::of_file(image, Some(&file)).unwrap();
            assert_eq!(mapped.frame_pointers(), Some(fp), "{name}: {mapped:?}");
            assert_eq!(read.frame_pointer_share, mapped.frame_pointer_share, "{name}: {read:?}");
            assert!(mapped.eh_frame && mapped.symtab && !mapped.is_go);
        }
    }

    #[test]
    fn stripped_and_debug_builds() {
        let debug = compile(&["-O1", "-g"]).expect("cc builds the test program");
        let facts = ObjectFacts::of(&debug).unwrap();
        assert!(facts.debug_info && facts.symtab && facts.build_id.is_some(), "{facts:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stripped");
        std::fs::write(&path, &debug).unwrap();
        let ok = std::process::Command::new("strip").arg(&path).status().unwrap().success();
        assert!(ok, "strip runs");
        let stripped = ObjectFacts::of(&std::fs::read(&path).unwrap()).unwrap();
        assert!(!stripped.debug_info && !stripped.symtab && stripped.eh_frame, "{stripped:?}");
        assert!(ObjectFacts::of(b"not an elf file").is_none());
    }
}
