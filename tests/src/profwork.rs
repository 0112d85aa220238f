//! Workloads and independent measurements of the off-CPU and memory profile
//! tests and of their benchmarks.
//!
//! The workloads (under `tests/workloads/`): `offcpu_block` (a thread asleep
//! almost all the time, its blocked time split 3:1 between two functions),
//! `leak` (C) and `goleak` (Go), which allocate at a steady rate through one
//! function and log their running byte total, and the benchmark loads
//! `pingpong` (context switches) and `malloc_loop` (C allocations; Go's is
//! `goleak` in churn mode).
//!
//! The ground truth the tests compare profiles with comes from outside
//! stackwatch: a thread's on-CPU time from `/proc/<pid>/task/<tid>/schedstat`
//! ([`ThreadWatch`]) and the bytes a workload allocated from its own log
//! ([`AllocLog`]), both read against the capture window of the manifest.
//!
//! Builds are cached under `<target>/stackwatch-tests/profwork/`, keyed by a
//! hash of the sources, flags and compiler version, and made in a private
//! directory renamed into place, so concurrent builds are safe. Every process
//! started here dies with its [`Running`] guard (and, through
//! `PR_SET_PDEATHSIG`, with the test thread that started it).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::build::{cached_build, go_build, run_ok, tool_version, Spawned};
use crate::{fnv1a, work_dir, WorkloadKind, C_FLAGS, FNV_OFFSET};

/// One of the off-CPU and memory workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfWorkload {
    /// `offcpu_block.c`: `blocker -> block_loop -> {block_a, block_b}`, each
    /// a nanosleep made with an inline `syscall` instruction.
    /// Args: `[A_US [B_US [asm|libc]]]` (default `3000 1000 asm`).
    OffcpuBlock,
    /// `leak.c`: `main -> leak_loop -> leak` (malloc + touch, never freed).
    /// Args: `LOG [SIZE [RATE [LIMIT]]]`.
    Leak,
    /// `goleak/`: `main.main -> main.leakLoop -> main.leak` (`make([]byte)`).
    /// Args: `LOG [SIZE [RATE [LIMIT [leak|churn]]]]`.
    GoLeak,
    /// `pingpong.c`: two threads passing a byte over pipes. Args: `SECONDS`;
    /// prints `round_trips_per_sec N`.
    PingPong,
    /// `malloc_loop.c`: malloc/touch/free as fast as it can.
    /// Args: `SECONDS [SIZE]`; prints `mallocs_per_sec N`.
    MallocLoop,
    /// `inuse.c`: `main -> inuse_loop -> {churn, hold}`: churn mallocs,
    /// reallocs and frees, hold callocs and keeps; logs the bytes held.
    /// Args: `LOG SIZE CHURN_RATE HOLD_RATE [LIMIT]`.
    InUse,
}

impl ProfWorkload {
    /// The binary's file name, which is also the process name (`comm`).
    pub fn name(self) -> &'static str {
        match self {
            Self::OffcpuBlock => "offcpu_block",
            Self::Leak => "leak",
            Self::GoLeak => "goleak",
            Self::PingPong => "pingpong",
            Self::MallocLoop => "malloc_loop",
            Self::InUse => "inuse",
        }
    }

    fn is_go(self) -> bool {
        self == Self::GoLeak
    }

    /// The source files (for C, the one file passed to gcc).
    pub fn sources(self) -> Vec<PathBuf> {
        let dir = WorkloadKind::source_dir();
        if self.is_go() {
            vec![dir.join("goleak/go.mod"), dir.join("goleak/main.go")]
        } else {
            vec![dir.join(format!("{}.c", self.name()))]
        }
    }

    /// The built binary, building it on first use (memoized per test
    /// binary, cached on disk across runs).
    pub fn binary(self) -> PathBuf {
        static BUILT: Mutex<Option<HashMap<ProfWorkload, PathBuf>>> = Mutex::new(None);
        let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
        let built = built.get_or_insert_with(HashMap::new);
        if let Some(path) = built.get(&self) {
            return path.clone();
        }
        let path = match self.build() {
            Ok(path) => path,
            Err(err) => panic!("failed to build workload {}: {err}", self.name()),
        };
        built.insert(self, path.clone());
        path
    }

    fn build(self) -> io::Result<PathBuf> {
        let key = self.cache_key()?;
        cached_build(&work_dir().join("profwork"), self.name(), key, |out| self.compile(out))
    }

    fn cache_key(self) -> io::Result<u64> {
        let mut hash = fnv1a(FNV_OFFSET, self.name().as_bytes());
        for source in self.sources() {
            let text = fs::read(&source)
                .map_err(|err| io::Error::new(err.kind(), format!("failed to read `{}`: {err}", source.display())))?;
            hash = fnv1a(fnv1a(hash, source.to_string_lossy().as_bytes()), &text);
        }
        if !self.is_go() {
            hash = C_FLAGS.iter().fold(hash, |h, f| fnv1a(h, f.as_bytes()));
        }
        Ok(fnv1a(hash, &tool_version(if self.is_go() { "go" } else { "gcc" })?))
    }

    fn compile(self, out: &Path) -> io::Result<()> {
        if self.is_go() {
            run_ok(&mut go_build(&WorkloadKind::source_dir().join("goleak"), &[], out))
        } else {
            run_ok(Command::new("gcc").args(C_FLAGS).args(["-Wall", "-Wextra", "-o"]).arg(out).args(self.sources()))
        }
    }

    /// A command running the built binary with `args`.
    pub fn command(self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.binary());
        cmd.args(args);
        cmd
    }

    /// Runs the workload to completion (a benchmark load) and returns its
    /// output; panics if it fails.
    pub fn run(self, args: &[&str], timeout: Duration) -> Output {
        let output = crate::run_with_timeout(self.command(args), timeout);
        assert!(
            output.status.success(),
            "{} {args:?} failed ({}):\n{}",
            self.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

/// A workload left running. Dropping it kills the process (SIGKILL) and
/// reaps it.
#[derive(Debug)]
pub struct Running {
    kind: ProfWorkload,
    child: Spawned,
}

impl Running {
    /// Builds (if needed) and starts `kind` with `args`, stdin and stdout closed.
    pub fn spawn(kind: ProfWorkload, args: &[&str]) -> Self {
        Self { kind, child: Spawned::start(kind.command(args)) }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `Some(status)` once the process has exited (it is then reaped).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_status()
    }

    /// Panics if the workload has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_status() {
            panic!("workload {} (pid {}) exited early: {status}", self.kind.name(), self.pid());
        }
    }

    /// The process's thread ids, sorted (the main thread's id is the pid).
    pub fn tids(&self) -> Vec<u32> {
        let entries = fs::read_dir(format!("/proc/{}/task", self.pid()))
            .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect::<Vec<u32>>());
        let mut tids = entries.unwrap_or_default();
        tids.sort_unstable();
        tids
    }

    /// Waits until the process has `n` threads and returns their ids;
    /// panics if it exits or 10 s pass first.
    pub fn wait_for_threads(&mut self, n: usize) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.assert_running();
            let tids = self.tids();
            if tids.len() >= n {
                return tids;
            }
            assert!(Instant::now() < deadline, "{} (pid {}) has only threads {tids:?}", self.kind.name(), self.pid());
            thread::sleep(Duration::from_millis(10));
        }
    }
}

// ---------------------------------------------------------------------------
// A thread's on-CPU time

/// Nanoseconds thread `tid` of `pid` has spent on a CPU, from the first
/// field of `/proc/<pid>/task/<tid>/schedstat` (the scheduler's own
/// accounting, in ns, unlike the tick-based times of `stat`); `None` once
/// the thread is gone.
pub fn thread_oncpu_ns(pid: u32, tid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A series of `(wall time, value)` readings with linear interpolation
/// between them: a thread's on-CPU nanoseconds over time.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub points: Vec<(SystemTime, u64)>,
}

impl Trace {
    /// The value at `t`, interpolated between the readings around it;
    /// `None` outside the traced interval.
    pub fn at(&self, t: SystemTime) -> Option<f64> {
        let after = self.points.iter().position(|(when, _)| *when >= t)?;
        let (t1, v1) = self.points[after];
        if after == 0 {
            return (t1 == t).then_some(v1 as f64);
        }
        let (t0, v0) = self.points[after - 1];
        let span = t1.duration_since(t0).ok()?.as_secs_f64();
        let into = t.duration_since(t0).ok()?.as_secs_f64();
        let frac = if span > 0.0 { into / span } else { 1.0 };
        Some(v0 as f64 + (v1 as f64 - v0 as f64) * frac)
    }

    /// The increase between `from` and `to`.
    pub fn between(&self, from: SystemTime, to: SystemTime) -> Option<f64> {
        Some(self.at(to)? - self.at(from)?)
    }
}

/// Polls a thread's on-CPU time every few milliseconds from a helper thread.
#[derive(Debug)]
pub struct ThreadWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Trace>>,
}

impl ThreadWatch {
    pub fn start(pid: u32, tid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut trace = Trace::default();
            while !flag.load(Ordering::Relaxed) {
                let Some(ns) = thread_oncpu_ns(pid, tid) else { break };
                trace.points.push((SystemTime::now(), ns));
                thread::sleep(Duration::from_millis(5));
            }
            trace
        });
        Self { stop, thread: Some(thread) }
    }

    pub fn finish(mut self) -> Trace {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for ThreadWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// What a workload allocated

/// The log `leak` and `goleak` write: one `CLOCK_REALTIME-ns total-bytes`
/// line after each burst of allocations (every 10 ms).
#[derive(Clone, Debug, Default)]
pub struct AllocLog {
    pub points: Vec<(SystemTime, u64)>,
}

impl AllocLog {
    /// Reads the log.
    pub fn read(path: &Path) -> Self {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => panic!("failed to read allocation log `{}`: {err}", path.display()),
        };
        Self::parse(&text)
    }

    /// Parses the complete (newline-terminated) lines of a log.
    pub fn parse(text: &str) -> Self {
        let points = text
            .split_inclusive('\n')
            .filter_map(|line| {
                let (ns, bytes) = line.strip_suffix('\n')?.split_once(' ')?;
                Some((UNIX_EPOCH + Duration::from_nanos(ns.parse().ok()?), bytes.parse().ok()?))
            })
            .collect();
        Self { points }
    }

    /// Waits until the log has `lines` complete lines (the workload is past
    /// start-up and allocating); panics after 20 s.
    pub fn wait(path: &Path, lines: usize) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = Self::parse(&fs::read_to_string(path).unwrap_or_default());
            if log.points.len() >= lines {
                return log;
            }
            assert!(Instant::now() < deadline, "`{}` has only {} lines after 20 s", path.display(), log.points.len());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bytes allocated by time `t`: the total of the last line written at or
    /// before `t` (each burst is logged right after it is made).
    pub fn total_at(&self, t: SystemTime) -> u64 {
        self.points.iter().take_while(|(when, _)| *when <= t).last().map_or(0, |&(_, bytes)| bytes)
    }

    /// Bytes allocated between `from` and `to`.
    pub fn between(&self, from: SystemTime, to: SystemTime) -> u64 {
        self.total_at(to).saturating_sub(self.total_at(from))
    }

    /// Whether the log covers `t` (it has lines before and after it).
    pub fn covers(&self, t: SystemTime) -> bool {
        self.points.first().is_some_and(|(first, _)| *first <= t)
            && self.points.last().is_some_and(|(last, _)| *last >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_log_totals_by_time() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let ns = |d: u64| (t0 + Duration::from_millis(d)).duration_since(UNIX_EPOCH).unwrap().as_nanos();
        // The last line is still being written: it does not count.
        let text = format!("{} 100\n{} 300\n{} 600\n{} 9", ns(0), ns(10), ns(20), ns(30));
        let log = AllocLog::parse(&text);
        assert_eq!(log.points.len(), 3);
        assert_eq!(log.total_at(t0 + Duration::from_millis(15)), 300);
        assert_eq!(log.between(t0 + Duration::from_millis(5), t0 + Duration::from_millis(20)), 500);
        assert!(log.covers(t0 + Duration::from_millis(15)));
        assert!(!log.covers(t0 + Duration::from_millis(25)));
    }

    #[test]
    fn trace_interpolates() {
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        let trace = Trace { points: vec![(t0, 1_000), (t0 + Duration::from_secs(2), 3_000)] };
        assert_eq!(trace.at(t0 + Duration::from_secs(1)), Some(2_000.0));
        assert_eq!(trace.between(t0, t0 + Duration::from_secs(2)), Some(2_000.0));
        assert_eq!(trace.at(t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn own_thread_has_oncpu_time() {
        let pid = std::process::id();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
        // A running thread's time is brought up to date when it is switched out.
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {}
        thread::sleep(Duration::from_millis(1));
        assert!(thread_oncpu_ns(pid, tid).is_some_and(|ns| ns > 0));
    }
}
