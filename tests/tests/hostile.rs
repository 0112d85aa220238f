//! The hostile probe of the hardening issue (#11), made repeatable: the
//! real binary, as root, fed bad input and put through faults, counted.
//!
//! Two tables, run by one test so one line can count them both:
//!
//! - **Bad inputs**: every subcommand and flag with malformed, out-of-range,
//!   empty, huge, negative and unicode values; targets that do not exist;
//!   output and control paths that cannot work; broken `watch` config
//!   files; garbage on the control FIFO and socket, while idle and while a
//!   capture runs; `ctl` with no daemon (or a broken one) behind the path.
//!   Each must be refused with the contract's exit code (2 usage, 1
//!   runtime) and one `error:` line, creating nothing; a daemon keeps
//!   running, answers `status`, and keeps the capture it was taking.
//! - **Faults**: targets that exit, exec, fork, stop or turn zombie
//!   mid-capture; output directories removed, renamed, made read-only or
//!   filled; signal storms; `kill -9` mid-write; the control FIFO and
//!   socket removed or replaced; bursts of toggles and of `ctl` clients;
//!   60 start/stop cycles; two writers at the same second. Each must be
//!   survived (or end cleanly, with one line), leave every written file
//!   valid, no temporary file and no BPF program or link of ours behind.
//!
//! A failing case names itself and the others still run (see
//! [`stackwatch_tests::hostile::Tally`]); the closing line reads
//! `hostile: N bad inputs rejected cleanly (…), M faults survived (…), data lost: K`.
//! Cases are cheap (1–2 s captures), and one daemon serves many inputs.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::symlink;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use stackwatch_tests::capture::{cgroup2_mounts, ReadOnlyBind, TestCgroup, Tmpfs};
use stackwatch_tests::daemon::{assert_cpu_split_profile, ctl, manifests, pprof_of, socket_of, WatchDaemon};
use stackwatch_tests::hostile::{
    assert_captures_valid, assert_one_error, assert_unchanged, crash_lines, data_lost, rss_kib, wait_proc_state,
    OurBpf, Snapshot, Tally,
};
use stackwatch_tests::{
    e2e_guard, require_go, run_with_timeout, scratch_dir, spawn_stackwatch, stackwatch_bin, Background, Workload,
    WorkloadKind,
};

#[path = "hostile/bad_input.rs"]
mod bad_input;
#[path = "hostile/record_faults.rs"]
mod record_faults;
#[path = "hostile/watch_faults.rs"]
mod watch_faults;

/// Longest a refusal may take: nothing is loaded or sampled before it.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on anything the daemon does by itself (an answer, a write, a start).
const SETTLE: Duration = Duration::from_secs(30);
/// Address space a refusal gets: it reads its arguments and files and
/// stops, so a read without bounds fails inside it instead of eating the
/// machine's memory.
const REFUSAL_ADDRESS_SPACE: libc::rlim_t = 1 << 30;

#[test]
fn hostile_inputs_and_faults() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let before = OurBpf::now();
    let mut tally = Tally::default();
    let fixtures = Fixtures::new();

    bad_input::command_lines(&mut tally, &fixtures);
    bad_input::ctl_without_a_daemon(&mut tally);
    bad_input::missing_targets(&mut tally, &fixtures);
    {
        let mut burner = Workload::cpu_split();
        burner.wait_busy();
        bad_input::control_input(&mut tally, burner.pid());
        watch_faults::daemon_faults(&mut tally, burner.pid());
        record_faults::record_faults(&mut tally, burner.pid());
    }
    record_faults::target_faults(&mut tally);

    tally.check("no BPF program or link of ours is left after the probe", || {
        OurBpf::assert_none_left_since(&before, "after the probe");
    });
    let (bad, faults) = (tally.bad_inputs_tried(), tally.faults_tried());
    tally.finish();
    if std::env::var_os(stackwatch_tests::hostile::ONLY).is_none() {
        assert!(bad >= 80 && faults >= 50, "the probe shrank: {bad} bad inputs, {faults} faults");
    }
}

// ---------------------------------------------------------------------------
// Fixtures

/// Targets that cannot be profiled: a zombie, a thread id, a pid nobody has.
struct Fixtures {
    zombie: Zombie,
    thread: ParkedThread,
    unused_pid: u32,
}

impl Fixtures {
    fn new() -> Self {
        Self { zombie: Zombie::new(), thread: ParkedThread::new(), unused_pid: unused_pid() }
    }
}

/// A child of this test that has exited and is not reaped: a zombie until dropped.
struct Zombie(Child);

impl Zombie {
    fn new() -> Self {
        let child = Command::new("true").spawn().unwrap_or_else(|e| panic!("spawn `true`: {e}"));
        wait_proc_state(child.id(), 'Z', SETTLE);
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Zombie {
    fn drop(&mut self) {
        let _ = self.0.wait();
    }
}

/// A thread of this test process, parked: its id is a tid, not a pid.
struct ParkedThread {
    tid: u32,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl ParkedThread {
    fn new() -> Self {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let _ = tid_tx.send(u32::try_from(tid).unwrap_or(0));
            let _ = stop_rx.recv();
        });
        let tid = tid_rx.recv().unwrap_or_else(|e| panic!("the parked thread died: {e}"));
        Self { tid, stop: Some(stop_tx), handle: Some(handle) }
    }
}

impl Drop for ParkedThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// A pid no process has: below pid_max, absent from /proc.
fn unused_pid() -> u32 {
    let max: u32 =
        fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32768);
    (2..max).rev().find(|p| !Path::new(&format!("/proc/{p}")).exists()).unwrap_or_else(|| panic!("no free pid"))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo `{}`", path.display());
}

/// Sends `signal` to `pid`, a process this test started and has not reaped.
fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Deterministic bytes covering every value (newlines and NULs included).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Shared by the tables: a daemon's log and state

/// What the daemon logged since byte `mark` of its log.
fn log_since(daemon: &WatchDaemon, mark: usize) -> String {
    daemon.stderr().get(mark..).unwrap_or_default().to_owned()
}

/// Writes `chunks` to the FIFO, then `status`, and returns what the daemon
/// logged up to its status line: the `status` flushes the daemon's
/// rate-limited warnings and marks the point where `chunks` were read.
fn fifo_exchange(daemon: &WatchDaemon, chunks: &[&[u8]]) -> String {
    let mark = daemon.stderr().len();
    for chunk in chunks {
        daemon.send(chunk);
    }
    daemon.send(b"status\n");
    let deadline = Instant::now() + SETTLE;
    loop {
        let log = log_since(daemon, mark);
        if log.contains("status: ") {
            return log;
        }
        assert!(Instant::now() < deadline, "the daemon did not log the `status` sent after the input:\n{log}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's `ctl status --json`.
fn status_json(daemon: &WatchDaemon) -> serde_json::Value {
    let raw = daemon.ctl_ok(&["status", "--json"]);
    serde_json::from_str(raw.trim()).unwrap_or_else(|e| panic!("`ctl status --json` is not JSON ({e}): {raw}"))
}

/// Asserts the daemon answers `status` in `state`, still on the capture
/// that started at `started` (when given).
fn assert_state(daemon: &WatchDaemon, state: &str, started: Option<&str>) {
    let status = status_json(daemon);
    assert_eq!(status["state"], state, "{status}\n--- daemon\n{}", daemon.stderr());
    if let Some(started) = started {
        if status["capture"]["started"].as_str() != Some(started) {
            data_lost(&format!("the capture started at {started} is gone: {status}\n--- daemon\n{}", daemon.stderr()));
        }
    }
}

// ---------------------------------------------------------------------------
// Shared by the tables: `record` in the background

fn wait_exit(mut bg: Background, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while bg.try_status().is_none() {
        assert!(Instant::now() < deadline, "record did not end within {timeout:?}:\n{}", bg.stderr());
        thread::sleep(Duration::from_millis(20));
    }
    bg.stop()
}

/// A `record` that ended cleanly: exit 0, or exit 1 with exactly one
/// `error:` line (the other lines are its log), and no crash. Returns the
/// error line, if any.
fn assert_clean_end(out: &Output, what: &str) -> Option<String> {
    let stderr = text(&out.stderr);
    assert!(crash_lines(&stderr).is_empty(), "{what}: crashed:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    match out.status.code() {
        Some(0) => {
            assert!(errors.is_empty(), "{what}: exit 0 with an error:\n{stderr}");
            None
        }
        Some(1) => {
            assert_eq!(errors.len(), 1, "{what}: exit 1 needs exactly one `error:` line:\n{stderr}");
            Some(errors[0].to_owned())
        }
        _ => panic!("{what}: exited with {} instead of 0 or 1:\n{stderr}", out.status),
    }
}

/// Runs `record ARGS… --output-dir OUT` in the background and waits until
/// its capture window is open.
fn record_bg(args: &[&str], out: &Path) -> Background {
    let out_arg = out.to_string_lossy().into_owned();
    let mut argv = vec!["record", "--output-dir", &out_arg];
    argv.extend_from_slice(args);
    let mut bg = spawn_stackwatch(&argv);
    bg.wait_for_output(SETTLE, |_, err| err.contains("recording target="));
    bg
}

/// One record fault: a fresh directory, and afterwards nothing of ours loaded.
fn record_fault(tally: &mut Tally, n: &mut usize, name: &str, case: impl FnOnce(&Path)) {
    *n += 1;
    let dir = scratch_dir(&format!("hostile-record-{n}"));
    tally.fault(&format!("record: {name}"), || {
        let before = OurBpf::now();
        case(&dir);
        OurBpf::assert_none_left_since(&before, name);
    });
}

/// The one capture `record` wrote into `out`, checked.
fn one_capture(out: &Path, what: &str) -> stackwatch_tests::hostile::Captures {
    let captures = assert_captures_valid(out, false);
    if captures.manifests.len() != 1 {
        data_lost(&format!("{what}: expected one capture in `{}`, found {:?}", out.display(), captures.manifests));
    }
    captures
}

/// Reaps `workload` from another thread as soon as it exits.
fn reap_in_background(mut workload: Workload) -> JoinHandle<()> {
    thread::spawn(move || {
        while workload.try_status().is_none() {
            thread::sleep(Duration::from_millis(10));
        }
    })
}

fn cpu_split_for(seconds: &str) -> Workload {
    let mut workload = Workload::spawn(WorkloadKind::CpuSplit, &[seconds]);
    workload.wait_for_cpu(Duration::from_millis(100), SETTLE);
    workload
}
