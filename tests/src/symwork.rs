//! Workloads and fixtures of the symbolization tests: builds that
//! look like production ones (Go stripped with `-ldflags="-s -w"`, C with
//! its DWARF moved to a separate debug file), a C program whose hot code is
//! inlined, one whose time goes into calls through the PLT, a Node.js
//! program whose hot code is JIT-compiled, and processes
//! whose binary the host cannot see (a private mount namespace) or that was
//! deleted after start.
//!
//! Builds are cached under `<target>/stackwatch-tests/symwork/`, keyed by a
//! hash of the sources, flags and compiler version, and made in a private
//! directory renamed into place, so concurrent builds are safe. Every
//! process started here dies with its [`Spawned`] guard (and, through
//! `PR_SET_PDEATHSIG`, with the test thread that started it).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::build::Spawned;
use crate::build::{go_build, run_ok, tool_version};
use crate::{fnv1a, is_ci, work_dir, WorkloadKind, FNV_OFFSET};

/// The workloads' source directory.
pub fn source(name: &str) -> PathBuf {
    WorkloadKind::source_dir().join(name)
}

/// Builds `name` with `build(out)` unless a build of the same inputs is
/// cached under `<target>/stackwatch-tests/symwork/`; `inputs` are hashed
/// (file contents, flags, compiler version).
fn cached_build(name: &str, inputs: &[&[u8]], build: impl FnOnce(&Path) -> io::Result<()>) -> PathBuf {
    let key = inputs.iter().fold(fnv1a(FNV_OFFSET, name.as_bytes()), |h, i| fnv1a(h, i));
    match crate::build::cached_build(&work_dir().join("symwork"), name, key, build) {
        Ok(path) => path,
        Err(err) => panic!("failed to build {name}: {err}"),
    }
}

fn read_source(path: &Path) -> Vec<u8> {
    match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => panic!("failed to read `{}`: {err}", path.display()),
    }
}

fn version_of(tool: &str) -> Vec<u8> {
    tool_version(tool).unwrap_or_default()
}

/// `gosplit` built the way production Go services often are, with
/// `-ldflags="-s -w"`: no `.symtab`, no DWARF, only Go's `.gopclntab`.
pub fn go_split_stripped() -> PathBuf {
    let dir = source("gosplit");
    let (main, module) = (read_source(&dir.join("main.go")), read_source(&dir.join("go.mod")));
    cached_build("gosplit-stripped", &[&main, &module, b"-s -w", &version_of("go")], |out| {
        run_ok(&mut go_build(&dir, &["-ldflags=-s -w"], out))
    })
}

/// gcc flags of `inline_hot`: optimized (so `always_inline` does inline and
/// the hot loop is real machine code), with frame pointers and DWARF. No
/// sibling calls: `-O2` would turn `hot`'s final call into a jump and drop
/// its frame, and the unwinder would lose `main`.
pub const INLINE_FLAGS: &[&str] =
    &["-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-optimize-sibling-calls"];

/// `inline_hot.c`: `main -> hot -> mix`, with `mix` inlined into `hot`.
pub fn inline_hot() -> PathBuf {
    let src = source("inline_hot.c");
    let flags = INLINE_FLAGS.join(" ");
    cached_build("inline_hot", &[&read_source(&src), flags.as_bytes(), &version_of("gcc")], |out| {
        run_ok(Command::new("gcc").args(INLINE_FLAGS).arg("-o").arg(out).arg(&src))
    })
}

/// gcc flags of `plt_hot`: optimized, with frame pointers and DWARF, and
/// `-fno-builtin` so `labs` stays a call through the PLT.
pub const PLT_FLAGS: &[&str] = &["-O2", "-g", "-fno-omit-frame-pointer", "-fno-builtin"];

/// `plt_hot.c`: `main -> plt_loop -> labs@plt -> labs`.
pub fn plt_hot() -> PathBuf {
    let src = source("plt_hot.c");
    let flags = PLT_FLAGS.join(" ");
    cached_build("plt_hot", &[&read_source(&src), flags.as_bytes(), &version_of("gcc")], |out| {
        run_ok(Command::new("gcc").args(PLT_FLAGS).arg("-o").arg(out).arg(&src))
    })
}

/// A binary whose debug info lives only in a separate file.
#[derive(Debug)]
pub struct SplitDebug {
    /// `cpu_split`, fully stripped (`.dynsym` only) with a `.gnu_debuglink`.
    pub binary: PathBuf,
    /// A debug directory holding `.build-id/xx/yyyy.debug`, to be named in
    /// `STACKWATCH_DEBUG_DIRS`.
    pub debug_dir: PathBuf,
    /// The build ID (lower-case hex).
    pub build_id: String,
}

/// `cpu_split` built as usual (`-g`), then split as distributions do:
/// `objcopy --only-keep-debug` into a debug file filed by build ID under a
/// fresh debug directory in `dir`, the binary stripped of everything but
/// `.dynsym` and given a debuglink. Nothing outside `dir` is touched.
pub fn cpu_split_split_debug(dir: &Path) -> SplitDebug {
    let binary = dir.join("cpu_split");
    let debug_file = dir.join("cpu_split.debug");
    let steps = || -> io::Result<String> {
        fs::copy(WorkloadKind::CpuSplit.binary(), &binary)?;
        run_ok(Command::new("objcopy").arg("--only-keep-debug").arg(&binary).arg(&debug_file))?;
        run_ok(Command::new("objcopy").arg("--strip-all").arg(&binary))?;
        run_ok(Command::new("objcopy").arg("--add-gnu-debuglink").arg(&debug_file).arg(&binary))?;
        let build_id = crate::capture::elf_build_id(&binary)
            .ok_or_else(|| io::Error::other(format!("`{}` has no build ID", binary.display())))?;
        Ok(build_id)
    };
    let build_id = steps().unwrap_or_else(|err| panic!("failed to split the debug info of cpu_split: {err}"));
    let debug_dir = dir.join("debug");
    let filed = debug_dir.join(".build-id").join(&build_id[..2]).join(format!("{}.debug", &build_id[2..]));
    let moved = fs::create_dir_all(filed.parent().unwrap_or(&debug_dir)).and_then(|()| fs::rename(&debug_file, &filed));
    if let Err(err) = moved {
        panic!("failed to file the debug file under `{}`: {err}", debug_dir.display());
    }
    SplitDebug { binary, debug_dir, build_id }
}

/// `node` on PATH: true if it runs. Otherwise fails the test in CI, or
/// notes the skip.
pub fn require_node() -> bool {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        other => {
            let what = format!("`node --version` does not run ({other:?}); install Node.js (`cargo xtask setup`)");
            assert!(!is_ci(), "{what}; under CI=true end-to-end tests must run, not skip");
            eprintln!("note: skipping test: {what}");
            false
        }
    }
}

/// Runs `binary args…` from a private tmpfs mounted at `mountpoint` in a
/// new mount namespace (`unshare --mount`): the process's binary is
/// `mountpoint/<name>` in its namespace, while on the host `mountpoint`
/// stays an empty directory. The mount goes away with the process.
pub fn spawn_in_private_mount(binary: &Path, mountpoint: &Path, args: &[&str]) -> Spawned {
    if let Err(err) = fs::create_dir_all(mountpoint) {
        panic!("failed to create `{}`: {err}", mountpoint.display());
    }
    let mut cmd = Command::new("unshare");
    // `unshare` execs the shell in the new namespace (no fork for a mount
    // namespace), and the shell execs the binary: one pid throughout.
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs stackwatch-test "$1" && cp "$2" "$1/" && shift 2 && exec "$@""#)
        .arg("sh")
        .arg(mountpoint)
        .arg(binary)
        .arg(mountpoint.join(binary.file_name().unwrap_or_default()))
        .args(args);
    Spawned::start(cmd)
}
