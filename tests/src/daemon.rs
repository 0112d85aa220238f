//! Driving `stackwatch watch` as an operator would: a daemon with its own
//! control FIFO and output directory under the test's scratch directory,
//! commands written to the FIFO or sent with `stackwatch ctl`, and checks of
//! what the kernel holds (perf events open, BPF programs loaded).
//!
//! Dropping a [`WatchDaemon`] stops it (SIGTERM, then SIGKILL) and removes
//! any FIFO or socket it left behind, so a failed test does not leave a
//! daemon sampling the machine for the tests after it.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use crate::{
    go_pprof_top, parse_pprof_top, run_with_timeout, scratch_dir, spawn_stackwatch, stackwatch_command, Background,
};

/// How long a daemon may take to load its program and answer `ctl status`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `stackwatch watch`.
#[derive(Debug)]
pub struct WatchDaemon {
    daemon: Option<Background>,
    /// The test's scratch directory.
    pub dir: PathBuf,
    /// The control FIFO (`<dir>/run/control`; the daemon creates `run/` 0700).
    pub control: PathBuf,
    /// `--output-dir` (`<dir>/out`).
    pub output: PathBuf,
}

impl WatchDaemon {
    /// Starts `stackwatch watch --control … --output-dir … ARGS…` in a fresh
    /// scratch directory named `name`, and waits until it answers `ctl status`.
    pub fn start(name: &str, args: &[&str]) -> Self {
        let dir = scratch_dir(name);
        Self::start_in(dir.clone(), dir.join("run").join("control"), dir.join("out"), args)
    }

    /// [`WatchDaemon::start`] with explicit paths.
    pub fn start_in(dir: PathBuf, control: PathBuf, output: PathBuf, args: &[&str]) -> Self {
        let control_arg = control.to_string_lossy().into_owned();
        let output_arg = output.to_string_lossy().into_owned();
        let mut argv = vec!["watch", "--control", &control_arg, "--output-dir", &output_arg];
        argv.extend_from_slice(args);
        let daemon = spawn_stackwatch(&argv);
        let mut this = Self { daemon: Some(daemon), dir, control, output };
        this.wait_ready();
        this
    }

    fn daemon(&mut self) -> &mut Background {
        match self.daemon.as_mut() {
            Some(daemon) => daemon,
            None => panic!("the daemon was already stopped"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, Background::pid)
    }

    /// What the daemon has logged so far.
    pub fn stderr(&self) -> String {
        self.daemon.as_ref().map(Background::stderr).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.daemon().try_status() {
                panic!("stackwatch watch exited during start-up ({status})\n--- stderr\n{}", self.stderr());
            }
            let out = self.ctl(&["status"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stackwatch watch did not answer `ctl status` within {READY_TIMEOUT:?}\n--- ctl\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes `bytes` to the control FIFO, as `echo … > FIFO` would. Panics
    /// if no daemon has it open (instead of blocking like a shell would).
    pub fn send(&self, bytes: &[u8]) {
        // O_NONBLOCK makes open fail with ENXIO when nobody reads the FIFO.
        let file = match OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&self.control) {
            Ok(file) => file,
            Err(err) => panic!("cannot open the control FIFO `{}`: {err}", self.control.display()),
        };
        // Back to blocking writes, so a large write waits for the daemon to read.
        // SAFETY: fcntl on a descriptor owned by `file`.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        let mut file = file;
        if let Err(err) = file.write_all(bytes) {
            panic!("failed to write {} bytes to `{}`: {err}", bytes.len(), self.control.display());
        }
    }

    /// `stackwatch ctl --control <this daemon's FIFO> ARGS…`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl(&self.control, args)
    }

    /// `ctl ARGS…`, asserting success; returns its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "`stackwatch ctl {}` failed ({})\n--- stdout\n{}\n--- stderr\n{}\n--- daemon\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.stderr()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The first word of `ctl status`: `idle`, `capturing` or `writing`.
    pub fn state(&self) -> String {
        let status = self.ctl_ok(&["status"]);
        status.split(':').next().unwrap_or_default().trim().to_owned()
    }

    /// Polls `ctl status` until the state is `state`.
    pub fn wait_state(&self, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.state();
            if now == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon stayed `{now}` instead of `{state}` for {timeout:?}\n--- daemon\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Manifests (`*-capture-*.json`) in the output directory, oldest first.
    pub fn manifests(&self) -> Vec<PathBuf> {
        manifests(&self.output)
    }

    /// Waits until the output directory holds `n` manifests; returns them.
    pub fn wait_manifests(&self, n: usize, timeout: Duration) -> Vec<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.manifests();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} captures written after {timeout:?}: {found:?}\n--- daemon\n{}",
                found.len(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal to the daemon.
    pub fn signal(&mut self, signal: libc::c_int) {
        self.daemon().signal(signal);
    }

    /// Sends a signal unless the daemon has exited (then `false`).
    pub fn signal_if_running(&mut self, signal: libc::c_int) -> bool {
        self.daemon().signal_if_running(signal)
    }

    /// `Some(status)` once it has exited.
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon().try_status()
    }

    /// Descriptors through which the daemon samples: one per CPU while
    /// capturing, none while idle. aya holds each perf event through a BPF
    /// link (`anon_inode:bpf_link`) where the kernel supports perf-event
    /// links, else as the perf event itself (`anon_inode:[perf_event]`).
    pub fn sampling_fds(&self) -> usize {
        self.open_fds().iter().filter(|fd| fd.contains("perf_event") || fd.contains("bpf_link")).count()
    }

    /// What each of the daemon's open descriptors is, sorted: a path, or
    /// `anon_inode:bpf-map`, `anon_inode:[perf_event]`, `socket`, `pipe`
    /// (an inode number is dropped: it is not what a leak check compares).
    pub fn open_fds(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(format!("/proc/{}/fd", self.pid())) else { return Vec::new() };
        let mut fds: Vec<String> = entries
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .map(|target| {
                let target = target.to_string_lossy().into_owned();
                match target.split_once(":[") {
                    Some((kind, inode)) if inode.trim_end_matches(']').bytes().all(|b| b.is_ascii_digit()) => {
                        kind.to_owned()
                    }
                    _ => target,
                }
            })
            .collect();
        fds.sort();
        fds
    }

    /// Stops it with SIGTERM (SIGKILL after a grace period) and returns its output.
    pub fn stop(mut self) -> Output {
        match self.daemon.take() {
            Some(daemon) => daemon.stop(),
            None => panic!("the daemon was already stopped"),
        }
    }
}

impl Drop for WatchDaemon {
    fn drop(&mut self) {
        drop(self.daemon.take());
        for leftover in [self.control.clone(), socket_of(&self.control)] {
            if fs::symlink_metadata(&leftover).is_ok() {
                let _ = fs::remove_file(&leftover);
            }
        }
    }
}

/// `stackwatch ctl --control CONTROL ARGS…`, with a 60 s timeout.
pub fn ctl(control: &Path, args: &[&str]) -> Output {
    let control = control.to_string_lossy().into_owned();
    let argv: Vec<&str> = ["ctl", "--control", control.as_str()].into_iter().chain(args.iter().copied()).collect();
    run_with_timeout(stackwatch_command(&argv), Duration::from_secs(60))
}

/// The reply socket next to a control FIFO.
pub fn socket_of(control: &Path) -> PathBuf {
    let mut name = control.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// Manifests in `dir`, oldest first (their names sort by capture time).
pub fn manifests(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.contains("-capture-") && name.ends_with(".json") && !name.starts_with('.')
        })
        .collect();
    found.sort();
    found
}

/// The cpu pprof that belongs to a manifest.
pub fn pprof_of(manifest: &Path) -> PathBuf {
    let name = manifest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    manifest.with_file_name(name.replacen("-capture-", "-cpu-", 1).replace(".json", ".pb.gz"))
}

/// Asserts the pprof shows `cpu_split`'s hot functions the way its source
/// says: `hot_a` on top, `hot_b` present, through `loop_fn`.
pub fn assert_cpu_split_profile(pprof: &Path) {
    let text = go_pprof_top(pprof);
    let top = parse_pprof_top(&text);
    let (a, b) = (top.flat("hot_a"), top.flat("hot_b"));
    assert!(a > 0.0 && b > 0.0, "hot_a and hot_b must both appear in `{}`:\n{text}", pprof.display());
    assert!(a > b, "hot_a (75% by construction) must outweigh hot_b (25%) in `{}`:\n{text}", pprof.display());
    assert!(top.cum("loop_fn") >= a, "hot_a must be reached through loop_fn in `{}`:\n{text}", pprof.display());
}

/// Loaded BPF programs whose name is `name`, per `bpftool prog show`.
pub fn bpf_programs_named(name: &str) -> usize {
    let out = match Command::new("bpftool").args(["prog", "show"]).output() {
        Ok(out) => out,
        Err(err) => panic!("cannot run `bpftool prog show` (install bpftool with `cargo xtask setup`): {err}"),
    };
    assert!(out.status.success(), "bpftool prog show failed: {}", String::from_utf8_lossy(&out.stderr));
    let needle = format!(" name {name} ");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| format!("{l} ").contains(&needle)).count()
}
