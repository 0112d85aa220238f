//! What every workload module shares: running a build command, caching its
//! output on disk by a hash of its inputs, the Go build environment, and
//! starting a process that dies with the test thread that started it.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::capture::proc_cpu_time;
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

/// A process started by a test (every workload module's guard); killed
/// (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    what: String,
}

impl Spawned {
    /// Starts `cmd` (stdin and stdout closed) so that it dies with the
    /// thread that started it.
    pub fn start(mut cmd: Command) -> Self {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        die_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(child) => Self { child, what },
            Err(err) => panic!("failed to start {what}: {err}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited (it is then reaped).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            Err(err) => panic!("failed to poll {}: {err}", self.what),
        }
    }

    /// Waits until it has used `min` of CPU; panics if it exits first or
    /// `timeout` passes (profiling should not start during start-up).
    pub fn wait_for_cpu(&mut self, min: Duration, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status() {
                panic!("{} exited early: {status}", self.what);
            }
            let used = proc_cpu_time(self.pid()).unwrap_or_default();
            if used >= min {
                return;
            }
            assert!(start.elapsed() < timeout, "{} used only {used:?} of CPU in {timeout:?}", self.what);
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for it to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(start.elapsed() < timeout, "{} did not exit within {timeout:?}", self.what);
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // The child is not reaped yet, so its pid cannot have been reused.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
