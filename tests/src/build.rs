//! What every workload module shares: running a build command, caching its
//! output on disk by a hash of its inputs, the Go build environment, and
//! starting a process that dies with the test thread that started it.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::work_dir;

/// Runs `cmd` (stdin closed); an error with its output if it fails.
pub(crate) fn run_ok(cmd: &mut Command) -> io::Result<()> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|err| io::Error::new(err.kind(), format!("failed to run {cmd:?}: {err}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{cmd:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}

/// `<cache>/<name>-<key>/<name>`, built by `build(out)` unless already
/// there. Safe when several tests or test binaries build at once: each
/// builds in a private directory and renames the result into place (rename
/// is atomic, and the rivals' outputs are identical).
pub(crate) fn cached_build(
    cache: &Path,
    name: &str,
    key: u64,
    build: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let final_bin = cache.join(format!("{name}-{key:016x}")).join(name);
    if final_bin.is_file() {
        return Ok(final_bin);
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = cache.join(format!(".tmp-{name}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let result = fs::create_dir_all(&tmp)
        .and_then(|()| build(&tmp.join(name)))
        .and_then(|()| fs::create_dir_all(final_bin.parent().unwrap_or(cache)))
        .and_then(|()| fs::rename(tmp.join(name), &final_bin));
    let _ = fs::remove_dir_all(&tmp);
    result.map(|()| final_bin)
}

/// What `tool --version` (`go version`) prints: part of a build's cache key.
pub(crate) fn tool_version(tool: &str) -> io::Result<Vec<u8>> {
    let arg = if tool == "go" { "version" } else { "--version" };
    Command::new(tool)
        .arg(arg)
        .output()
        .map(|o| o.stdout)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot run `{tool}` ({err}); run `cargo xtask setup`")))
}

/// `go build ARGS -o OUT .` in `dir`, with the build and module caches
/// inside the target dir (so neither root's HOME nor a user's go env file
/// matters), nothing fetched, and a static binary (no dependence on the
/// host's libc).
pub(crate) fn go_build(dir: &Path, args: &[&str], out: &Path) -> Command {
    let go = work_dir().join("go");
    let mut cmd = Command::new("go");
    cmd.arg("build")
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(".")
        .current_dir(dir)
        .env("GOCACHE", go.join("cache"))
        .env("GOPATH", go.join("path"))
        .env("GOFLAGS", "-buildvcs=false")
        .env("GOENV", "off")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0");
    cmd
}

/// Makes the process `cmd` starts get SIGKILL when the thread that started
/// it exits (`PR_SET_PDEATHSIG`), so it dies with the test even if the test
/// process is killed before its guard's `Drop` runs: a leaked CPU burner
/// would distort every later test on a small machine.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
