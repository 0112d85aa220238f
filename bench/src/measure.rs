//! What the benchmark reads from the kernel: resource usage of a reaped
//! child (`wait4`), CPU time and memory of a live process (`/proc/<pid>`),
//! host CPU time (`/proc/stat`) and the BPF programs and maps a process holds
//! (`/proc/<pid>/fdinfo`, whose `run_time_ns`/`run_cnt` the kernel keeps
//! while `kernel.bpf_stats_enabled` is 1).
//!
//! Reading fdinfo needs nothing from the profiler under test and sees only
//! that process's programs, so parallel test runs on the same host that load
//! programs of the same name cannot be mixed in.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use xtask::cmd;

/// A python3.11 program that keeps the interpreter busy, sleeping 1 ms
/// per round: something for a whole-host capture to unwind and name
/// (libpython, libc). Run as `python3.11 -c PYTHON_LOOP`.
pub(crate) const PYTHON_LOOP: &str = "import time\nwhile True:\n    sum(range(10000)); time.sleep(0.001)";

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`, of
/// `perf record -k CLOCK_MONOTONIC` and of the workload's readings.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds between two `monotonic_ns` readings.
pub(crate) fn secs(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e9
}

/// Resources a child used over its whole life, with those of the children
/// it waited for (Linux's `wait4` reports `RUSAGE_BOTH`: CPU summed, RSS the
/// largest of any one process), so a `sh -c 'a | b | c'` pipeline is counted whole.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
    /// Peak resident set of the largest process, MiB.
    pub max_rss_mib: f64,
}

impl Usage {
    pub(crate) fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Reaps `child` with `wait4`, returning its exit status and usage. The
/// `Child` must not be waited for again.
pub(crate) fn wait_usage(child: &Child) -> Result<(libc::c_int, Usage)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; `pid` is our own child.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if ret == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("failed to wait for process {pid}"));
        }
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let usage = Usage { user_s: tv(ru.ru_utime), sys_s: tv(ru.ru_stime), max_rss_mib: ru.ru_maxrss as f64 / 1024.0 };
    Ok((status, usage))
}

/// Whether a `wait4` status is a normal exit with code 0.
pub(crate) fn exited_ok(status: libc::c_int) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// A `wait4` status in words.
pub(crate) fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

/// Sends `sig` to `pid` (ignoring a process that is already gone).
pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain syscall.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Echoes `cmd` like [`cmd::run`] and starts it.
pub(crate) fn spawn(cmd: &mut Command) -> Result<Child> {
    let line = cmd::display(cmd);
    eprintln!("$ {line}");
    cmd.spawn().with_context(|| format!("failed to start `{line}`"))
}

/// CPU time of every thread of `pid` so far, from `/proc/<pid>/task/*/schedstat`
/// (nanoseconds, unlike the 10 ms ticks of `/proc/<pid>/stat`).
pub(crate) fn process_cpu_ns(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for entry in fs::read_dir(&dir).with_context(|| format!("failed to list `{dir}`"))? {
        let path = entry?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        if let Ok(text) = fs::read_to_string(&path) {
            total += text.split_whitespace().next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(total)
}

/// `VmRSS` and `VmHWM` of a live process, MiB.
pub(crate) fn process_rss_mib(pid: u32) -> Result<(f64, f64)> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("failed to read `{path}`"))?;
    let field = |name: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => bail!("no VmRSS/VmHWM in `{path}`"),
    }
}

/// Host CPU time from the first line of `/proc/stat`, seconds: (busy, total).
/// Busy is everything but idle and iowait.
pub(crate) fn host_cpu_s() -> Result<(f64, f64)> {
    let text = fs::read_to_string("/proc/stat").context("failed to read `/proc/stat`")?;
    let line = text.lines().next().unwrap_or_default();
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|w| w.parse().ok()).collect();
    if ticks.len() < 5 {
        bail!("unexpected first line in `/proc/stat`: {line}");
    }
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks[3] + ticks[4];
    let hz = clock_ticks_per_s();
    Ok(((total - idle) as f64 / hz, total as f64 / hz))
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: plain libc call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Online CPUs.
pub(crate) fn nproc() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// One BPF program as fdinfo shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ProgStat {
    pub run_time_ns: u64,
    pub run_cnt: u64,
    /// A perf_event program: its runs are samples. Others (stackwatch's
    /// exec hook, tracepoints) cost time but take no sample.
    pub sampler: bool,
}

/// `BPF_PROG_TYPE_PERF_EVENT`, as fdinfo's `prog_type:` prints it.
const PROG_TYPE_PERF_EVENT: u64 = 7;

/// One BPF map as fdinfo shows it: `memlock` is the kernel's estimate of
/// what the map pins (all preallocated elements, or the elements present
/// in a `BPF_F_NO_PREALLOC` map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct MapStat {
    pub memlock: u64,
    pub max_entries: u64,
    pub value_size: u64,
}

/// The BPF programs and maps one process holds, by kernel id.
#[derive(Clone, Debug, Default)]
pub(crate) struct BpfSnapshot {
    pub progs: BTreeMap<u32, ProgStat>,
    pub maps: BTreeMap<u32, MapStat>,
}

impl BpfSnapshot {
    pub(crate) fn map_bytes(&self) -> u64 {
        self.maps.values().map(|m| m.memlock).sum()
    }

    /// Samples taken: the runs of the perf_event programs (of every
    /// program if there is none), so that time per run is time per sample
    /// with the time of the other programs included.
    pub(crate) fn run_cnt(&self) -> u64 {
        let any_sampler = self.progs.values().any(|p| p.sampler);
        self.progs.values().filter(|p| p.sampler || !any_sampler).map(|p| p.run_cnt).sum()
    }
}

/// Reads `/proc/<pid>/fdinfo/*` for BPF program and map fds. Empty when the
/// process is gone.
pub(crate) fn bpf_snapshot(pid: u32) -> BpfSnapshot {
    let mut snap = BpfSnapshot::default();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return snap;
    };
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else { continue };
        let field = |name: &str| -> Option<u64> {
            text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok())
        };
        // A link's fdinfo names its program too (`link_type:` … `prog_id:`)
        // but has no counters: only a program fd has `prog_type:`.
        if field("prog_type:").is_none() && field("map_type:").is_none() {
            continue;
        }
        if let Some(id) = field("prog_id:") {
            let stat = ProgStat {
                run_time_ns: field("run_time_ns:").unwrap_or(0),
                run_cnt: field("run_cnt:").unwrap_or(0),
                sampler: field("prog_type:") == Some(PROG_TYPE_PERF_EVENT),
            };
            snap.progs.insert(id as u32, stat);
        } else if let Some(id) = field("map_id:") {
            let stat = MapStat {
                memlock: field("memlock:").unwrap_or(0),
                max_entries: field("max_entries:").unwrap_or(0),
                value_size: field("value_size:").unwrap_or(0),
            };
            snap.maps.insert(id as u32, stat);
        }
    }
    snap
}

/// Names of BPF programs and maps by id, from `bpftool … show --json`.
#[derive(Clone, Debug, Default)]
pub(crate) struct BpfNames {
    pub progs: BTreeMap<u32, String>,
    pub maps: BTreeMap<u32, String>,
}

impl BpfNames {
    /// Asks bpftool for the names of the ids in `snap` (quietly: it runs
    /// during a measurement, and its line would interleave with the
    /// profiler's output).
    pub(crate) fn lookup(snap: &BpfSnapshot) -> BpfNames {
        let mut names = BpfNames::default();
        let prog_ids: Vec<u32> = snap.progs.keys().copied().collect();
        let map_ids: Vec<u32> = snap.maps.keys().copied().collect();
        for (kind, wanted, out) in [("prog", prog_ids, &mut names.progs), ("map", map_ids, &mut names.maps)] {
            if wanted.is_empty() {
                continue;
            }
            let Ok(json) = cmd::stdout(Command::new("bpftool").args([kind, "show", "--json"])) else { continue };
            let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(&json) else {
                continue;
            };
            for item in items {
                let id = item.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
                if wanted.contains(&id) {
                    let name = item.get("name").and_then(serde_json::Value::as_str).unwrap_or("?");
                    out.insert(id, name.to_owned());
                }
            }
        }
        names
    }
}

/// What the [`BpfWatcher`] saw of one process.
#[derive(Clone, Debug, Default)]
pub(crate) struct BpfWatch {
    /// When a program of the process first ran (`monotonic_ns`).
    pub first_run_ns: Option<u64>,
    /// The latest values seen per program and map: after the process
    /// detached (programs stay loaded until exit) these are the totals.
    pub last: BpfSnapshot,
    /// The largest total of map memory seen.
    pub max_map_bytes: u64,
    pub names: BpfNames,
}

/// Polls a process's fdinfo on a thread: every millisecond until its
/// programs first run (so launch-to-first-sample is measured to ~1 ms), then
/// every 50 ms. Reading a few dozen fdinfo files costs microseconds.
pub(crate) struct BpfWatcher {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<BpfWatch>,
}

impl BpfWatcher {
    pub(crate) fn start(pid: u32) -> BpfWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut watch = BpfWatch::default();
            let mut named_at: Option<u64> = None;
            let mut loaded_at: Option<u64> = None;
            while !flag.load(Ordering::Relaxed) {
                let snap = bpf_snapshot(pid);
                let now = monotonic_ns();
                if watch.first_run_ns.is_none() && snap.run_cnt() > 0 {
                    watch.first_run_ns = Some(now);
                }
                // Names from bpftool once the object is fully loaded: 300 ms
                // after its first program shows up.
                if loaded_at.is_none() && !snap.progs.is_empty() {
                    loaded_at = Some(now);
                }
                if named_at.is_none() && loaded_at.is_some_and(|t| now > t + 300_000_000) {
                    watch.names = BpfNames::lookup(&snap);
                    named_at = Some(now);
                }
                watch.max_map_bytes = watch.max_map_bytes.max(snap.map_bytes());
                // Merged by id, never replaced: while the process exits its
                // fds close one by one, and a snapshot then is partial.
                // Counters only grow, so the latest value per id is the total.
                watch.last.progs.extend(snap.progs);
                watch.last.maps.extend(snap.maps);
                let pause = if watch.first_run_ns.is_some() { 50 } else { 1 };
                thread::sleep(Duration::from_millis(pause));
            }
            watch
        });
        BpfWatcher { stop, handle }
    }

    /// Stops polling (call once the process has exited).
    pub(crate) fn finish(self) -> BpfWatch {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Waits up to `timeout` for `path` to exist.
pub(crate) fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    let deadline = monotonic_ns() + timeout.as_nanos() as u64;
    while monotonic_ns() < deadline {
        if path.exists() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    path.exists()
}
