//! Harness for stackwatch's end-to-end tests.
//!
//! The tests drive the real `stackwatch` binary as an operator would (it is
//! never linked as a library), against workloads whose call graph and CPU
//! split are known: `cpu_split` (C), `syscalls` (C, kernel-heavy) and
//! `gosplit` (Go). This crate builds those workloads, runs them and the
//! profiler with timeouts, kills every child it started, and reads profiles
//! back with `go tool pprof`.
//!
//! Privileges: a profiling test starts with
//!
//! ```no_run
//! let Some(_guard) = stackwatch_tests::e2e_guard() else { return };
//! ```
//!
//! which skips (with a note) when not root or without bpf(), except under
//! `CI=true`, where a missing privilege fails the test: in CI the end-to-end
//! tests must run, never skip.
//!
//! Concurrency: the guard is also a machine-wide lock ([`exclusive`]), so two
//! profiling tests never run at once, even from different test binaries; on
//! a 2-core machine a second CPU burner would distort the measured shares.
//! That is why `cargo xtask test` can leave libtest's default thread count
//! alone.

mod build;
pub mod capture;
pub mod daemon;
pub mod hostile;
pub mod ops;
mod pprof;
mod process;
pub mod profwork;
pub mod symwork;
pub mod triggers;
pub mod unwindwork;
mod workload;

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub use build::Spawned;
pub use pprof::{go_pprof, go_pprof_top, go_pprof_top_index, parse_pprof_top, share_tolerance, PprofTop, TopRow};
pub use process::{
    run_stackwatch, run_stackwatch_timeout, run_with_timeout, spawn_stackwatch, stackwatch_command, Background,
};
pub use workload::{Workload, WorkloadKind, C_FLAGS, NO_FP_FLAGS};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map_or_else(|| manifest_dir.join(".."), Path::to_path_buf)
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else the directory above
/// this test binary that carries cargo's `CACHEDIR.TAG`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() { dir } else { workspace_root().join(dir) };
    }
    // Test binaries live in `<target>/[<triple>/]<profile>/deps/`.
    if let Ok(exe) = env::current_exe() {
        if let Some(dir) = exe.ancestors().skip(1).find(|dir| dir.join("CACHEDIR.TAG").is_file()) {
            return dir.to_path_buf();
        }
    }
    workspace_root().join("target")
}

/// `<target>/stackwatch-tests`: built workloads, Go caches, the lock file and
/// scratch directories. Created on first use.
pub fn work_dir() -> PathBuf {
    let dir = target_dir().join("stackwatch-tests");
    if let Err(err) = fs::create_dir_all(&dir) {
        panic!("failed to create `{}`: {err}", dir.display());
    }
    dir
}

/// A fresh, empty directory for one test's output:
/// `<target>/stackwatch-tests/scratch/<name>`. It is emptied at the start of
/// the test rather than at the end, so a failed test leaves its files there
/// for inspection.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = work_dir().join("scratch").join(name);
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => panic!("failed to clear `{}`: {err}", dir.display()),
    }
    if let Err(err) = fs::create_dir_all(&dir) {
        panic!("failed to create `{}`: {err}", dir.display());
    }
    dir
}

/// The `stackwatch` binary under test: `STACKWATCH_BIN` if set (as
/// `cargo xtask test` does), else `<target>/release/stackwatch`, else
/// `<target>/debug/stackwatch`. Panics if there is none: the tests do not build
/// it themselves, because a plain `cargo test` would then test a stale binary
/// without saying so.
pub fn stackwatch_bin() -> PathBuf {
    if let Some(bin) = env::var_os("STACKWATCH_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "STACKWATCH_BIN is set to `{}`, which is not a file", bin.display());
        return bin;
    }
    let target = target_dir();
    for profile in ["release", "debug"] {
        let bin = target.join(profile).join("stackwatch");
        if bin.is_file() {
            return bin;
        }
    }
    panic!(
        "no stackwatch binary in `{}/{{release,debug}}`: build it with `cargo xtask build` \
         (or run `cargo xtask test`, or point STACKWATCH_BIN at one)",
        target.display()
    );
}

/// Whether this is a CI run (`CI=true`), where end-to-end tests must not skip.
pub fn is_ci() -> bool {
    env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Reports an unmet requirement: fails the test in CI, else notes the skip.
fn unmet(what: &str) -> bool {
    assert!(!is_ci(), "{what}; under CI=true end-to-end tests must run, not skip");
    eprintln!("note: skipping test: {what}");
    false
}

/// True when running as root. Otherwise fails the test in CI, or prints a
/// note and returns false so the test can return early.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    unmet("not running as root (end-to-end tests load eBPF programs: run them as root)")
}

/// True when the bpf() syscall works here (probed by creating and closing a
/// one-entry array map). Otherwise fails the test in CI, or notes the skip.
pub fn require_bpf() -> bool {
    match probe_bpf() {
        Ok(()) => true,
        Err(err) => unmet(&format!("bpf() does not work here ({err}); run as root, or grant CAP_BPF and CAP_PERFMON")),
    }
}

fn probe_bpf() -> io::Result<()> {
    /// The `BPF_MAP_CREATE` prefix of `union bpf_attr`; the kernel requires
    /// the rest of the passed size to be zero.
    #[repr(C)]
    struct MapCreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        rest: [u32; 28],
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    let attr =
        MapCreateAttr { map_type: BPF_MAP_TYPE_ARRAY, key_size: 4, value_size: 4, max_entries: 1, rest: [0; 28] };
    // SAFETY: `attr` is a valid, fully initialised buffer of the size passed,
    // and lives across the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreateAttr,
            size_of::<MapCreateAttr>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just handed us this descriptor and nothing else owns it.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// True when `go version` runs (Go workloads and `go tool pprof` need it).
/// Otherwise fails the test in CI, or notes the skip.
pub fn require_go() -> bool {
    match Command::new("go").arg("version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => unmet(&format!("`go version` failed ({}); install Go with `cargo xtask setup`", out.status)),
        Err(err) => unmet(&format!("cannot run `go` ({err}); install Go with `cargo xtask setup`")),
    }
}

/// Held while an end-to-end test runs; see [`exclusive`].
#[derive(Debug)]
pub struct ExclusiveGuard {
    // Closing the descriptor releases the flock.
    _file: File,
}

/// Where the machine-wide lock lives: `/run` (writable by root only), so
/// checkouts with different target directories (git worktrees, a CI clone
/// beside a developer's tree) still never profile at the same time. Falls
/// back to the target directory when `/run` is not writable (not root: the
/// end-to-end tests skip then anyway).
fn lock_path() -> PathBuf {
    let run = Path::new("/run");
    if run.is_dir() && dir_writable(run) {
        run.join("stackwatch-e2e.lock")
    } else {
        work_dir().join("e2e.lock")
    }
}

fn dir_writable(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: NUL-terminated path, plain syscall.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Takes the machine-wide end-to-end test lock (`flock` on
/// `/run/stackwatch-e2e.lock`, see [`lock_path`]), waiting for the holder if
/// needed. flock locks belong to the open file description, so this also
/// serializes threads of one test binary.
pub fn exclusive() -> ExclusiveGuard {
    let path = lock_path();
    // O_NOFOLLOW: never follow a planted symlink, even in a root-only dir.
    let file = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(file) => file,
        Err(err) => panic!("failed to open lock file `{}`: {err}", path.display()),
    };
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid descriptor owned by `file`.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return ExclusiveGuard { _file: file };
    }
    let start = Instant::now();
    eprintln!("note: waiting for another end-to-end test to release `{}`", path.display());
    loop {
        // SAFETY: as above.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
            eprintln!("note: got the end-to-end lock after {:?}", start.elapsed());
            return ExclusiveGuard { _file: file };
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            panic!("failed to lock `{}`: {err}", path.display());
        }
    }
}

/// The usual opening of a profiling test: root and bpf() are required (a
/// failure in CI, a noted skip elsewhere), then the end-to-end lock is taken.
/// Returns `None` when the test should return early.
pub fn e2e_guard() -> Option<ExclusiveGuard> {
    if !require_root() || !require_bpf() {
        return None;
    }
    Some(exclusive())
}

/// 64-bit FNV-1a: a stable content hash for cache keys (std's hasher may
/// change between Rust releases, which would only cost a rebuild, but FNV
/// keeps the directory names stable and readable across toolchains).
pub(crate) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn target_dir_contains_this_test_binary() {
        let exe = env::current_exe().expect("current_exe");
        if env::var_os("CARGO_TARGET_DIR").is_none() {
            assert!(exe.starts_with(target_dir()), "{exe:?} not under {:?}", target_dir());
        }
    }
}
