//! Running `stackwatch` (or any command) with a timeout and captured output,
//! in the foreground or as a background daemon that is stopped on drop.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{stackwatch_bin, work_dir};

/// How long a stopped process gets to write its files between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(15);

/// A `stackwatch` command with `args` and stdin closed.
pub fn stackwatch_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(stackwatch_bin());
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Runs `stackwatch args…` to completion and returns its output, whatever
/// the exit status. The timeout is the `--duration` in `args` (if any) plus
/// 60 s for start-up and writing, else 120 s.
pub fn run_stackwatch(args: &[&str]) -> Output {
    let timeout = args
        .windows(2)
        .find(|w| w[0] == "--duration")
        .and_then(|w| parse_duration(w[1]))
        .map_or(Duration::from_secs(120), |d| d + Duration::from_secs(60));
    run_stackwatch_timeout(args, timeout)
}

/// [`run_stackwatch`] with an explicit timeout.
pub fn run_stackwatch_timeout(args: &[&str], timeout: Duration) -> Output {
    run_with_timeout(stackwatch_command(args), timeout)
}

/// Runs `cmd` with stdout and stderr captured. Past `timeout` it gets
/// SIGTERM, then SIGKILL after a grace period, and the test panics with
/// whatever the command printed.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(err) => panic!("failed to start {shown}: {err}"),
    };
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (status, timed_out) = wait_or_stop(&mut child, timeout);
    let output =
        Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() };
    assert!(
        !timed_out,
        "{shown} did not finish within {timeout:?} and was stopped ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits up to `timeout`; then SIGTERM, and SIGKILL after [`TERM_GRACE`].
/// Returns the exit status and whether the timeout hit.
fn wait_or_stop(child: &mut Child, timeout: Duration) -> (ExitStatus, bool) {
    if let Some(status) = wait_until(child, Instant::now() + timeout) {
        return (status, false);
    }
    (terminate(child), true)
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(err) => panic!("failed to poll pid {}: {err}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then SIGKILL after [`TERM_GRACE`]; reaps the child.
fn terminate(child: &mut Child) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    // Not reaped yet, so the pid is still ours.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    if let Some(status) = wait_until(child, Instant::now() + TERM_GRACE) {
        return status;
    }
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    match child.wait() {
        Ok(status) => status,
        Err(err) => panic!("failed to reap pid {}: {err}", child.id()),
    }
}

/// A `stackwatch` left running (e.g. `watch`). Its stdout and stderr go to
/// files under the test work dir, readable while it runs. Dropping it stops
/// it (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// Starts `stackwatch args…` in the background.
pub fn spawn_stackwatch(args: &[&str]) -> Background {
    let mut cmd = stackwatch_command(args);
    let dir = work_dir().join("background");
    if let Err(err) = fs::create_dir_all(&dir) {
        panic!("failed to create `{}`: {err}", dir.display());
    }
    let stem = format!("{}-{}", std::process::id(), unique());
    let stdout = dir.join(format!("{stem}.stdout"));
    let stderr = dir.join(format!("{stem}.stderr"));
    let open = |path: &PathBuf| match File::create(path) {
        Ok(file) => file,
        Err(err) => panic!("failed to create `{}`: {err}", path.display()),
    };
    cmd.stdout(open(&stdout)).stderr(open(&stderr));
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => panic!("failed to start {cmd:?}: {err}"),
    };
    Background { child, stdout, stderr }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has printed to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it has printed to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `Some(status)` once it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            Err(err) => panic!("failed to poll pid {}: {err}", self.child.id()),
        }
    }

    /// Sends `signal` (e.g. `libc::SIGUSR2`); panics if it has exited.
    pub fn signal(&mut self, signal: libc::c_int) {
        if !self.signal_if_running(signal) {
            panic!("stackwatch (pid {}) has exited\n--- stderr\n{}", self.pid(), self.stderr());
        }
    }

    /// Sends `signal` unless the process has exited (then `false`): for
    /// storms of signals, which the process may answer by exiting at any
    /// moment. Safe against pid reuse: the child is only reaped by
    /// [`Self::try_status`], so until then its pid stays its own (a zombie
    /// ignores the signal).
    pub fn signal_if_running(&mut self, signal: libc::c_int) -> bool {
        if self.try_status().is_some() {
            return false;
        }
        // SAFETY: kill has no memory-safety preconditions; the child is not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        true
    }

    /// Polls `cond` on (stdout, stderr) every 50 ms until it holds; panics
    /// after `timeout` or if the process exits first.
    pub fn wait_for_output(&mut self, timeout: Duration, cond: impl Fn(&str, &str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.stdout(), &self.stderr()) {
                return;
            }
            if let Some(status) = self.try_status() {
                if cond(&self.stdout(), &self.stderr()) {
                    return;
                }
                panic!(
                    "stackwatch exited ({status}) before the expected output\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "expected output did not appear within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it with SIGTERM (SIGKILL after a grace period) and returns its
    /// exit status and full output.
    pub fn stop(mut self) -> Output {
        let status = terminate(&mut self.child);
        Output {
            status,
            stdout: fs::read(&self.stdout).unwrap_or_default(),
            stderr: fs::read(&self.stderr).unwrap_or_default(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Parses the durations tests pass to `--duration`: `500ms`, `10s`, `2m`, `1h`.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().ok()?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_test_durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("10y"), None);
    }

    #[test]
    fn run_with_timeout_captures_output_and_status() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    #[should_panic(expected = "did not finish within 200ms")]
    fn run_with_timeout_stops_a_hung_command() {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        run_with_timeout(cmd, Duration::from_millis(200));
    }
}
