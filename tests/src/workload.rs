//! Workloads with a known call graph and CPU split: building them (once per
//! source content, cached on disk, safe when several tests or test binaries
//! build at once), spawning them, and killing them when the test is done.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::build::{cached_build, go_build, run_ok, tool_version, Spawned};
use crate::{fnv1a, work_dir, workspace_root, FNV_OFFSET};

/// gcc flags for the C workloads. Frame pointers everywhere, no inlining,
/// and debug info for file:line. `-mno-omit-leaf-frame-pointer` is honoured
/// by newer gcc only; gcc 12 still drops the frame in a leaf that needs no
/// stack, so the hot functions in the sources are kept non-leaf on purpose.
pub const C_FLAGS: &[&str] =
    &["-O1", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-inline", "-pthread"];

/// One of the workloads under `tests/workloads/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// `cpu_split.c`: `main -> loop_fn -> {hot_a 75%, hot_b 25%}`.
    /// Args: `[SECONDS [THREADS]]`.
    CpuSplit,
    /// `syscalls.c`: `main -> syscall_loop -> do_{getppid,write,read}`, about
    /// 90% of its time in the kernel. Args: `[SECONDS]`.
    Syscalls,
    /// `gosplit/`: `main.main -> main.loop -> {main.hotA 75%, main.hotB 25%}`.
    /// Args: `[SECONDS [GOROUTINES]]`; env `GOSPLIT_CPUPROFILE=PATH` also
    /// writes Go's own CPU profile.
    GoSplit,
    /// `phases.c`: idle then busy (`cpu IDLE [THREADS [BUSY]]`, hot function
    /// `phase_hot`), or resident memory growing steadily
    /// (`grow STEP_KIB PERIOD_MS MAX_MIB`, faults in `touch_pages`).
    Phases,
    /// `many_threads.c`: a crowd of threads (default 2000) each looping
    /// `churn` (malloc + free), a 5 ms `nap`, and for every 50th a 1 ms
    /// `spin`: the crowded target that once kept probes counting long after
    /// a capture. Args: `[THREADS [SPIN_EVERY [SECONDS]]]`.
    ManyThreads,
    /// `dump_block.c`: threads parked inside glibc in known functions
    /// (`block_in_read`, `block_on_mutex`, `block_in_sleep`; the main
    /// thread in `wait_for_workers`), named `sw-reader`, `sw-locker`,
    /// `sw-sleeper`. Runs until killed.
    DumpBlock,
    /// `cpu_split.c` built the way release builds are: `-O2` without frame
    /// pointers, so its stacks cannot be walked by frame pointers.
    NoFramePointers,
    /// `godiff/`: `main.main -> main.phase -> {main.alpha, main.beta}`, in
    /// phases `HOT:SECONDS[:PROFILE]` where HOT does 3× the other's work;
    /// with PROFILE a phase writes Go's own CPU profile of itself. `diff`'s
    /// known answer.
    GoDiff,
    /// `shift.c`: `alpha` a third of the time for ALPHA_SECONDS, then `beta`
    /// all the time (3× the CPU). The flight recorder's known answer.
    Shift,
}

/// gcc flags of [`WorkloadKind::NoFramePointers`].
pub const NO_FP_FLAGS: &[&str] = &["-O2", "-g", "-fomit-frame-pointer", "-pthread"];

impl WorkloadKind {
    /// The binary's file name, which is also the process name (`comm`).
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuSplit => "cpu_split",
            Self::Syscalls => "syscalls",
            Self::GoSplit => "gosplit",
            Self::Phases => "phases",
            Self::ManyThreads => "many_threads",
            Self::DumpBlock => "dump_block",
            Self::NoFramePointers => "cpu_split_nofp",
            Self::GoDiff => "godiff",
            Self::Shift => "shift",
        }
    }

    /// Source directory of the workloads.
    pub fn source_dir() -> PathBuf {
        workspace_root().join("tests").join("workloads")
    }

    fn sources(self) -> Vec<PathBuf> {
        let dir = Self::source_dir();
        match self {
            Self::CpuSplit => vec![dir.join("cpu_split.c")],
            Self::Syscalls => vec![dir.join("syscalls.c")],
            Self::GoSplit => vec![dir.join("gosplit/go.mod"), dir.join("gosplit/main.go")],
            Self::Phases => vec![dir.join("phases.c")],
            Self::ManyThreads => vec![dir.join("many_threads.c")],
            Self::DumpBlock => vec![dir.join("dump_block.c")],
            Self::NoFramePointers => vec![dir.join("cpu_split.c")],
            Self::GoDiff => vec![dir.join("godiff/go.mod"), dir.join("godiff/main.go")],
            Self::Shift => vec![dir.join("shift.c")],
        }
    }

    /// The built binary, building it on first use. Built once per test
    /// binary (later calls return the memoized path) and cached on disk under
    /// `<target>/stackwatch-tests/workloads/`, keyed by a hash of the sources,
    /// flags and compiler version.
    pub fn binary(self) -> PathBuf {
        static BUILT: Mutex<Option<HashMap<WorkloadKind, PathBuf>>> = Mutex::new(None);
        // Holding the lock across the build makes concurrent tests of one
        // binary wait for a single build instead of racing several.
        let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
        let built = built.get_or_insert_with(HashMap::new);
        if let Some(path) = built.get(&self) {
            return path.clone();
        }
        let path = match self.build_in(&work_dir().join("workloads")) {
            Ok(path) => path,
            Err(err) => panic!("failed to build workload {}: {err}", self.name()),
        };
        built.insert(self, path.clone());
        path
    }

    /// Builds into (or finds in) the cache directory `cache`, returning the
    /// binary's path. Safe to call concurrently from several processes (see
    /// [`crate::build::cached_build`]).
    pub fn build_in(self, cache: &Path) -> io::Result<PathBuf> {
        let key = self.cache_key()?;
        cached_build(cache, self.name(), key, |out| self.compile(out))
    }

    fn cache_key(self) -> io::Result<u64> {
        let mut hash = fnv1a(FNV_OFFSET, self.name().as_bytes());
        for source in self.sources() {
            let text = fs::read(&source)
                .map_err(|err| io::Error::new(err.kind(), format!("failed to read `{}`: {err}", source.display())))?;
            hash = fnv1a(hash, source.to_string_lossy().as_bytes());
            hash = fnv1a(hash, &text);
        }
        let (compiler, flags): (&str, &[&str]) = match self {
            Self::CpuSplit | Self::Syscalls | Self::Phases | Self::ManyThreads | Self::DumpBlock | Self::Shift => {
                ("gcc", C_FLAGS)
            }
            Self::NoFramePointers => ("gcc", NO_FP_FLAGS),
            Self::GoSplit | Self::GoDiff => ("go", &[]),
        };
        for flag in flags {
            hash = fnv1a(hash, flag.as_bytes());
        }
        Ok(fnv1a(hash, &tool_version(compiler)?))
    }

    fn compile(self, out: &Path) -> io::Result<()> {
        match self {
            Self::CpuSplit | Self::Syscalls | Self::Phases | Self::ManyThreads | Self::DumpBlock | Self::Shift => {
                run_ok(Command::new("gcc").args(C_FLAGS).args(["-Wall", "-Wextra", "-o"]).arg(out).args(self.sources()))
            }
            Self::NoFramePointers => run_ok(
                Command::new("gcc").args(NO_FP_FLAGS).args(["-Wall", "-Wextra", "-o"]).arg(out).args(self.sources()),
            ),
            Self::GoSplit | Self::GoDiff => run_ok(&mut go_build(&Self::source_dir().join(self.name()), &[], out)),
        }
    }

    /// A command running the built binary; pass it to [`Workload::spawn_command`].
    pub fn command(self) -> Command {
        Command::new(self.binary())
    }
}

/// A running workload. Dropping it kills the process (SIGKILL) and reaps it.
///
/// The child also gets `PR_SET_PDEATHSIG=SIGKILL`, so it dies with the
/// thread that spawned it even if the test process is killed before `Drop`
/// runs: a leaked CPU burner would distort every later test on a small machine.
#[derive(Debug)]
pub struct Workload {
    kind: WorkloadKind,
    child: Spawned,
    exe: PathBuf,
}

impl Workload {
    /// Builds (if needed) and starts `kind` with `args`.
    pub fn spawn(kind: WorkloadKind, args: &[&str]) -> Self {
        let mut cmd = kind.command();
        cmd.args(args);
        Self::spawn_command(kind, cmd)
    }

    /// Starts a command made by [`WorkloadKind::command`] (for extra env).
    pub fn spawn_command(kind: WorkloadKind, cmd: Command) -> Self {
        let exe = PathBuf::from(cmd.get_program());
        Self { kind, child: Spawned::start(cmd), exe }
    }

    /// `cpu_split` running until killed, single-threaded.
    pub fn cpu_split() -> Self {
        Self::spawn(WorkloadKind::CpuSplit, &[])
    }

    /// `syscalls` running until killed.
    pub fn syscalls() -> Self {
        Self::spawn(WorkloadKind::Syscalls, &[])
    }

    /// `gosplit` running until killed, one goroutine.
    pub fn go_split() -> Self {
        Self::spawn(WorkloadKind::GoSplit, &[])
    }

    pub fn kind(&self) -> WorkloadKind {
        self.kind
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Path of the executable (as mapped in the process, for mapping checks).
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Waits until the process has at least `threads` threads (its main
    /// thread included); panics if it exits or `timeout` passes first.
    pub fn wait_for_threads(&mut self, threads: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            self.assert_running();
            let count = fs::read_dir(format!("/proc/{}/task", self.pid())).map_or(0, Iterator::count);
            if count >= threads {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "workload {} (pid {}) has {count} threads after {timeout:?}, wanted {threads}",
                self.kind.name(),
                self.pid()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process's thread ids, from `/proc/<pid>/task`.
    pub fn tids(&self) -> Vec<u32> {
        let dir = format!("/proc/{}/task", self.pid());
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => panic!("failed to list `{dir}`: {err}"),
        };
        let mut tids: Vec<u32> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
        tids.sort_unstable();
        tids
    }

    /// `Some(status)` once the process has exited (it is then reaped).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_status()
    }

    /// Waits for it to exit by itself, at most `timeout` (it is killed if
    /// the test then panics).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        self.child.wait(timeout)
    }

    /// Panics if the workload has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_status() {
            panic!("workload {} (pid {}) exited early: {status}", self.kind.name(), self.pid());
        }
    }

    /// CPU time used so far, split as (user, system), from `/proc/<pid>/stat`.
    pub fn cpu_times(&self) -> (Duration, Duration) {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = match fs::read_to_string(&path) {
            Ok(stat) => stat,
            Err(err) => panic!("failed to read `{path}`: {err}"),
        };
        match parse_stat_cpu(&stat) {
            Some(times) => times,
            None => panic!("unexpected format of `{path}`: {stat}"),
        }
    }

    /// Total CPU time used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let (user, system) = self.cpu_times();
        user + system
    }

    /// Waits until the workload has used at least `min` of CPU time; panics
    /// if it exits or `timeout` passes first. Use it before profiling so the
    /// profile does not start during exec and dynamic linking.
    pub fn wait_for_cpu(&mut self, min: Duration, timeout: Duration) {
        let start = Instant::now();
        loop {
            self.assert_running();
            let used = self.cpu_time();
            if used >= min {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "workload {} (pid {}) used only {used:?} of CPU in {timeout:?} (wanted {min:?})",
                self.kind.name(),
                self.pid()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`wait_for_cpu`](Self::wait_for_cpu) with 200 ms of CPU within 30 s.
    pub fn wait_busy(&mut self) {
        self.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(30));
    }
}

/// Clock ticks per second for `/proc/<pid>/stat` times.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// (utime, stime) from the text of `/proc/<pid>/stat`. The command name
/// (field 2) is in parentheses and may hold spaces and ')', so fields are
/// counted from the last ')'.
fn parse_stat_cpu(stat: &str) -> Option<(Duration, Duration)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    let to_duration = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000) / ticks);
    Some((to_duration(utime), to_duration(stime)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let stat = "4242 (a) b (c) R 1 4242 4242 0 -1 4194304 96 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        let (user, system) = parse_stat_cpu(stat).expect("parse");
        let ticks = clock_ticks();
        assert_eq!(user, Duration::from_nanos(250 * 1_000_000_000 / ticks));
        assert_eq!(system, Duration::from_nanos(50 * 1_000_000_000 / ticks));
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat_cpu("1 (x) R 1 2 3"), None);
        assert_eq!(parse_stat_cpu("garbage"), None);
    }
}
