//! The CPU time a target used during a capture: the manifest's
//! `target_cpu_seconds`, which says how many samples a lossless capture
//! collects.
//!
//! Reading the target's counter only at the start and the end of the window
//! gets it wrong in two ways: a process that exits mid-capture takes its
//! CPU time with it (`/proc/<pid>/stat` is gone), and the end reading comes
//! whenever this process gets to it, which on a crowded host is seconds
//! after the kernel closed the window. So a [`CpuMeter`] reads the counter
//! on its own thread every [`METER_INTERVAL`], from just before the window
//! opens until it is told the window is over, keeps the last value of every
//! process (a [`PidTracker`] never goes backwards when a process exits), and
//! the CPU time at the window's exact start and end is interpolated between
//! the readings around them. What a process uses in its last interval before
//! exiting is not seen: at most [`METER_INTERVAL`] of CPU per exiting
//! process.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ids::Pid;
use crate::procfs::cputime::{cgroup_cpu_seconds, host_cpu_seconds, PidTracker};
use crate::procfs::stat;
use crate::profile::capture::CaptureWindow;
use crate::sys::{boot_time_ticks, monotonic_ns, ticks_per_second};
use crate::target::Filter;

/// How often the counter is read while a capture runs. Reading costs one
/// small procfs file per target process (or one cgroup or `/proc/stat`
/// read), so ten a second is cheap, and bounds what an exiting process
/// takes with it to a tenth of a second of its CPU time.
pub(crate) const METER_INTERVAL: Duration = Duration::from_millis(100);

/// A read that takes longer than this was preempted: its moment is unsure.
/// Reading `/proc/<pid>/stat` of a process with thousands of threads takes
/// well under a millisecond.
const PROMPT_READ: Duration = Duration::from_millis(2);

/// The latest readings kept (besides the first two, around the start):
/// [`METER_INTERVAL`] apart, enough to find the two around a window end this
/// process noticed up to several seconds late.
const KEPT_READINGS: usize = 128;

/// Samples the CPU time of a target on a thread of its own; see the module
/// documentation. Dropping it stops the thread.
pub(crate) struct CpuMeter {
    shared: Arc<Mutex<Meter>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl CpuMeter {
    /// Takes the first reading now and starts sampling. Call it right
    /// before the window opens.
    pub(crate) fn start(filter: &Filter, cgroup_dir: Option<&Path>) -> Self {
        let counter = match filter {
            Filter::All => Counter::Host,
            Filter::Pids(pids) => Counter::Processes { pids: pids.clone(), tracker: PidTracker::default() },
            Filter::Cgroup { .. } => Counter::Cgroup(cgroup_dir.map(Path::to_path_buf)),
        };
        let mut meter = Meter { counter, readings: Readings::default() };
        meter.read();
        let shared = Arc::new(Mutex::new(meter));
        let (stop, stopped) = mpsc::channel::<()>();
        let sampler = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("cpu-meter".to_owned()).spawn(move || loop {
            match stopped.recv_timeout(METER_INTERVAL) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            sampler.lock().unwrap_or_else(PoisonError::into_inner).read();
        });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                // Start and end readings only: right unless processes exit.
                tracing::debug!("cannot start the CPU meter thread: {e}");
                None
            }
        };
        Self { shared, stop: Some(stop), thread }
    }

    /// Processes matched since the start (`--name`), counted from now on
    /// unless they started since the last reading.
    pub(crate) fn set_pids(&self, pids: &[Pid]) {
        let mut meter = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if let Counter::Processes { pids: tracked, .. } = &mut meter.counter {
            for pid in pids {
                if !tracked.contains(pid) {
                    tracked.push(*pid);
                }
            }
        }
    }

    /// Stops sampling and returns the CPU seconds used inside `window`
    /// (the window as it was counted: closed early, or not), `None` when the
    /// counter could never be read.
    pub(crate) fn finish(mut self, window: &CaptureWindow) -> Option<f64> {
        self.stop_thread();
        let mut meter = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        meter.read();
        meter.readings.between(window.start_ns, window.end_ns)
    }

    fn stop_thread(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for CpuMeter {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

struct Meter {
    counter: Counter,
    readings: Readings,
}

impl Meter {
    /// Reads the counter and keeps the reading, timed at the middle of the
    /// read. On a crowded host this thread can be preempted for a good part
    /// of a second during a read, which leaves the moment the value stands
    /// for that uncertain (and a reading timed late at the window's start
    /// inflates the figure): such a read is tried again, and the one that
    /// took least is kept.
    fn read(&mut self) {
        const ATTEMPTS: usize = 3;
        let mut best: Option<(u64, u64, f64)> = None;
        for _ in 0..ATTEMPTS {
            let before = monotonic_ns();
            let Some(seconds) = self.counter.read() else { break };
            let after = monotonic_ns();
            let took = after.saturating_sub(before);
            if best.is_none_or(|(best_took, _, _)| took < best_took) {
                best = Some((took, before + took / 2, seconds));
            }
            if Duration::from_nanos(took) <= PROMPT_READ {
                break;
            }
        }
        if let Some((_, at, seconds)) = best {
            self.readings.push(at, seconds);
        }
    }
}

/// Where a target's CPU time comes from; every reading is cumulative.
enum Counter {
    /// Busy time of every CPU, from `/proc/stat`.
    Host,
    /// `usage_usec` of the cgroup, which keeps what exited processes used.
    Cgroup(Option<PathBuf>),
    /// The processes' `utime + stime`, kept after they exit.
    Processes { pids: Vec<Pid>, tracker: PidTracker },
}

impl Counter {
    fn read(&mut self) -> Option<f64> {
        match self {
            Counter::Host => host_cpu_seconds(),
            Counter::Cgroup(dir) => cgroup_cpu_seconds(dir.as_deref()?),
            Counter::Processes { pids, tracker } => {
                let boot_ticks = boot_time_ticks();
                // Zombies too: their times are final, and the leader of a
                // process whose other threads still run shows as one.
                let stats: Vec<_> = pids.iter().filter_map(|&pid| Some((pid, stat::read(pid)?))).collect();
                Some(tracker.update(boot_ticks, &stats) as f64 / ticks_per_second())
            }
        }
    }
}

/// Timed readings of a cumulative counter, in time order: the first two
/// (one before the window opens, one after), and the latest
/// [`KEPT_READINGS`].
#[derive(Debug, Default)]
struct Readings {
    first: Vec<(u64, f64)>,
    recent: VecDeque<(u64, f64)>,
}

impl Readings {
    fn push(&mut self, at_ns: u64, value: f64) {
        if self.first.len() < 2 {
            self.first.push((at_ns, value));
            return;
        }
        if self.recent.len() == KEPT_READINGS {
            self.recent.pop_front();
        }
        self.recent.push_back((at_ns, value));
    }

    /// The counter at `t_ns`, linear between the readings around it, and
    /// the nearest reading's value outside them.
    fn at(&self, t_ns: u64) -> Option<f64> {
        let points = self.first.iter().chain(&self.recent);
        let mut before: Option<(u64, f64)> = None;
        let mut after: Option<(u64, f64)> = None;
        for &(at, value) in points {
            if at <= t_ns {
                before = Some((at, value));
            } else if after.is_none() {
                after = Some((at, value));
            }
        }
        match (before, after) {
            (Some((t0, v0)), Some((t1, v1))) => Some(v0 + (v1 - v0) * ((t_ns - t0) as f64 / (t1 - t0) as f64)),
            (Some((_, v)), None) | (None, Some((_, v))) => Some(v),
            (None, None) => None,
        }
    }

    /// The counter's growth over `[start_ns, end_ns]`.
    fn between(&self, start_ns: u64, end_ns: u64) -> Option<f64> {
        Some((self.at(end_ns)? - self.at(start_ns)?).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::SystemTime;

    use super::*;

    fn readings(points: &[(u64, f64)]) -> Readings {
        let mut r = Readings::default();
        for &(t, v) in points {
            r.push(t, v);
        }
        r
    }

    #[test]
    fn interpolates_between_the_readings_around_each_end() {
        let r = readings(&[(100, 1.0), (200, 2.0), (300, 4.0)]);
        assert_eq!(r.at(150), Some(1.5));
        assert_eq!(r.at(250), Some(3.0));
        assert_eq!(r.at(300), Some(4.0));
        // Outside the readings: the nearest one, never extrapolated.
        assert_eq!(r.at(50), Some(1.0));
        assert_eq!(r.at(400), Some(4.0));
        assert_eq!(r.between(150, 250), Some(1.5));
        assert_eq!(Readings::default().between(0, 10), None);
    }

    #[test]
    fn keeps_the_first_reading_and_the_latest() {
        let points: Vec<(u64, f64)> = (0..1000).map(|i| (i * 10, i as f64)).collect();
        let r = readings(&points);
        assert_eq!(r.first, [(0, 0.0), (10, 1.0)]);
        assert_eq!(r.recent.len(), KEPT_READINGS);
        // The start of a long window falls between the first two readings.
        assert_eq!(r.between(5, 9990), Some(998.5));
        assert_eq!(r.between(9985, 9990), Some(0.5));
    }

    /// The case that once read nothing: the target burns CPU, then exits
    /// (and is reaped, so its `/proc/<pid>` is gone) before the capture
    /// ends. The meter that read only at the end saw 0.
    #[test]
    fn a_process_that_exits_mid_capture_keeps_its_cpu_time() {
        // Shell arithmetic only (no child processes): all the CPU time is
        // the shell's own, about 0.7 s.
        let child = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        let meter = CpuMeter::start(&Filter::Pids(vec![Pid::new(pid)]), None);
        let window = CaptureWindow::starting_now(Duration::from_secs(30));
        // wait4 reaps it and says exactly how much CPU it used.
        let mut status = 0;
        // SAFETY: all-zero is a valid rusage; wait4 on our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid as libc::pid_t);
        drop(child);
        let seconds_of = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let used = seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} was reaped");
        std::thread::sleep(METER_INTERVAL * 2);
        let window = window.closed_at(monotonic_ns());
        let seconds = meter.finish(&window).expect("a reading");
        eprintln!("the process used {used:.3} s of CPU; the meter saw {seconds:.3} s");
        assert!(used > 0.2, "the workload was too short to tell: {used} s");
        // All but its last interval before exiting (three, for a busy test
        // machine that runs the meter's thread late), and never more than it
        // used (give or take a clock tick, the unit of `/proc/<pid>/stat`).
        let tick = 1.0 / ticks_per_second();
        let lost = (used - seconds) / used;
        assert!(seconds >= used - 3.0 * METER_INTERVAL.as_secs_f64(), "lost {:.0} % of it", 100.0 * lost);
        assert!(seconds <= used + 2.0 * tick, "{seconds} s > {used} s");
    }

    #[test]
    fn host_meter_reads_something_and_stops() {
        let start = SystemTime::now();
        let meter = CpuMeter::start(&Filter::All, None);
        let window = CaptureWindow::starting_at(start, monotonic_ns(), Duration::from_millis(250));
        std::thread::sleep(Duration::from_millis(300));
        let seconds = meter.finish(&window).expect("`/proc/stat` is readable");
        // Busy time of 250 ms on however many CPUs: never negative, never
        // more than every CPU busy all the time (with a tick of slack).
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        assert!((0.0..=cpus * 0.25 + 0.05).contains(&seconds), "{seconds}");
    }
}
