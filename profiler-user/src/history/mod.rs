//! The flight recorder (`watch --history`): the minutes before a capture,
//! kept at a low rate, so a capture can say what changed.
//!
//! A rule fires after its condition has held for a while; by then the onset
//! is over. The recorder samples the watch target continuously (a separate,
//! low-frequency program, `crate::bpf::HistorySource`, that a capture never
//! sees), counts the samples unsymbolized in fixed time slots within a
//! memory budget ([`slots`]) on a thread of its own, and snapshots the
//! mappings of every process it sees with its own [`Symbolizer`], so a
//! process that exited since is still named. When a capture starts the
//! daemon takes a [`HistoryView`]; when the capture is written the view is
//! symbolized into a cpu profile whose samples carry their slot's time and
//! a differential flamegraph of "since the condition first held" against
//! "before it" ([`render`]).
//!
//! Off unless configured: without `--history` the program is not loaded and
//! no thread runs.

pub(crate) mod render;
pub(crate) mod slots;

use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use tracing::{debug, warn};

use self::slots::{Dropped, Slot, Slots};
use crate::aggregate::{adjust_return_addresses, comm_string};
use crate::bpf::{HistorySource, Loader, Programs};
use crate::ids::Pid;
use crate::symbolize::Symbolizer;
use crate::target::{Filter, TargetSpec};

/// `--history-frequency` by default: a prime, so the sampler does not beat
/// with periodic work.
pub(crate) const DEFAULT_FREQUENCY_HZ: u64 = 19;
/// `--history-memory` by default.
pub(crate) const DEFAULT_MEMORY_BYTES: u64 = 32 << 20;
/// The slot length by default.
pub(crate) const DEFAULT_SLOT: Duration = Duration::from_secs(10);
/// For a manual start, the diff's new side is this last stretch.
pub(crate) const MANUAL_RECENT: Duration = Duration::from_secs(60);
/// How often the ring buffer is drained.
const DRAIN_EVERY: Duration = Duration::from_secs(1);
/// How often the snapshots of exited processes no slot needs are dropped.
const FORGET_EVERY: Duration = Duration::from_secs(60);
/// How often a pid or name target's processes are looked up again.
const REFRESH_TARGET_EVERY: Duration = Duration::from_secs(10);

/// The recorder's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HistoryConfig {
    /// How far back the history reaches (`--history`).
    pub window: Duration,
    pub frequency_hz: u64,
    pub memory_bytes: u64,
    pub slot: Duration,
}

/// State shared by the recorder's thread and the daemon.
struct Shared {
    slots: Mutex<Slots>,
    /// Used for snapshots on the recorder's thread and for naming at write
    /// time on the writer's.
    symbolizer: Mutex<Symbolizer>,
    lost: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
}

/// The running recorder; stops its thread when dropped.
pub(crate) struct Recorder {
    config: HistoryConfig,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The history at one moment, for one capture.
#[derive(Clone)]
pub(crate) struct HistoryView {
    pub config: HistoryConfig,
    pub slots: Vec<Slot>,
    pub names: std::collections::HashMap<Pid, String>,
    /// When the view was taken (the capture's start).
    pub taken: SystemTime,
    pub dropped: Dropped,
    pub lost: u64,
    pub bytes: usize,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// Loads the recorder's own copy of the program for `target` (so a
    /// capture's maps and counts are never touched), attaches it and starts
    /// draining it on a thread of its own.
    /// `memory` follows the bytes the rolling profile holds (the
    /// `history_memory` metric).
    pub(crate) fn start(config: HistoryConfig, target: &TargetSpec, memory: Gauge) -> anyhow::Result<Self> {
        let filter = match target {
            TargetSpec::Host => Filter::All,
            TargetSpec::Pids(_) | TargetSpec::Name(_) => Filter::Pids(Vec::new()),
            TargetSpec::Cgroup(_) => target.resolve().map(|r| r.filter).context("the history needs the cgroup now")?,
        };
        let mut loader = Loader::load_with(&filter, Programs { history: true, ..Programs::default() })
            .context("failed to load the history sampler")?;
        let follow = matches!(filter, Filter::Pids(_)).then(|| target.clone());
        if let Some(target) = &follow {
            refresh_pids(&mut loader, target);
        }
        let source = loader.start_history(config.frequency_hz)?;
        let budget = usize::try_from(config.memory_bytes).unwrap_or(usize::MAX);
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots::new(config.slot, config.window, budget)),
            symbolizer: Mutex::new(Symbolizer::for_daemon()),
            lost: std::sync::atomic::AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("stackwatch-history".into())
            .spawn(move || run(&thread_shared, source, loader, follow.as_ref(), &memory))
            .context("failed to start the history thread")?;
        Ok(Self { config, shared, thread: Some(thread) })
    }
    /// What the recorder holds now.
    pub(crate) fn view(&self) -> HistoryView {
        let lost = self.shared.lost.load(Ordering::Relaxed);
        HistoryView::of(self.config, &lock(&self.shared.slots), SystemTime::now(), lost, Arc::clone(&self.shared))
    }

    /// One line for `status` and the log.
    pub(crate) fn describe(&self) -> String {
        let slots = lock(&self.shared.slots);
        let dropped = slots.dropped();
        format!(
            "history: {} samples in {} slots, {} of {} KiB, {} slots dropped",
            slots.slots().map(Slot::samples).sum::<u64>(),
            slots.slots().count(),
            slots.bytes() / 1024,
            slots.budget() / 1024,
            dropped.slots
        )
    }
}

/// The recorder's thread: drains the ring buffer every second into the
/// slots, snapshots the processes it sees, and follows a pid or name target.
fn run(shared: &Shared, mut source: HistorySource, mut loader: Loader, follow: Option<&TargetSpec>, memory: &Gauge) {
    let mut seen: Vec<Pid> = Vec::new();
    let (mut last_forget, mut last_refresh) = (Instant::now(), Instant::now());
    while !shared.stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        // The kernel wakes this thread only when its buffer is half full
        // (see `history_sample`): normally a drain a second.
        source.drain(DRAIN_EVERY, |r| {
            let user = adjust_return_addresses(&r.user[..(r.user_len as usize).min(r.user.len())]);
            let kernel = adjust_return_addresses(&r.kernel[..(r.kernel_len as usize).min(r.kernel.len())]);
            batch.push((Pid::new(r.pid), start_ticks(r.start_ns), comm_string(&r.comm), user, kernel));
        });
        let now = SystemTime::now();
        {
            let mut slots = lock(&shared.slots);
            for (pid, start, comm, user, kernel) in &batch {
                slots.add(now, *pid, *start, comm, user, kernel);
            }
            slots.expire(now);
            memory.set(i64::try_from(slots.bytes()).unwrap_or(i64::MAX));
        }
        shared.lost.store(source.lost(), Ordering::Relaxed);
        // Only processes with user frames need their mappings kept (kernel
        // threads have none).
        seen.extend(batch.iter().filter(|(.., user, _)| !user.is_empty()).map(|(pid, ..)| *pid));
        seen.sort_unstable();
        seen.dedup();
        // Snapshots wait while a capture's history is being named.
        if let Ok(mut symbolizer) = shared.symbolizer.try_lock() {
            symbolizer.observe_native(&seen);
            seen.clear();
            // Checking every snapshot costs a `/proc` read each (thousands
            // on a host that forks a lot): once a minute is enough.
            if last_forget.elapsed() >= FORGET_EVERY {
                last_forget = Instant::now();
                let slots = lock(&shared.slots);
                symbolizer.forget_exited_unless(|pid| slots.holds(pid));
            }
        }
        if last_refresh.elapsed() >= REFRESH_TARGET_EVERY {
            last_refresh = Instant::now();
            if let Some(target) = follow {
                refresh_pids(&mut loader, target);
            }
        }
    }
    debug!("history recorder stopped");
}

/// A process start from the kernel (ns since boot) in the clock ticks of
/// `/proc/PID/stat`; 0 stays unknown.
fn start_ticks(start_ns: u64) -> u64 {
    // Whole ticks, as the kernel's `nsec_to_clock_t` rounds them.
    let ns_per_tick = (1e9 / crate::sys::ticks_per_second()) as u64;
    start_ns / ns_per_tick.max(1)
}

/// Points the sampler at the processes a pid or name target has now (a
/// restarted service is followed; none is not an error).
fn refresh_pids(loader: &mut Loader, target: &TargetSpec) {
    let pids = match target.resolve() {
        Ok(resolved) => resolved.info.pids,
        Err(_) => Vec::new(),
    };
    if let Err(e) = loader.set_target_pids(&pids) {
        warn!("history: failed to update the processes followed: {e:#}");
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the history recorder's thread panicked");
            }
        }
    }
}

impl HistoryView {
    fn of(config: HistoryConfig, slots: &Slots, taken: SystemTime, lost: u64, shared: Arc<Shared>) -> Self {
        let pids: HashSet<Pid> = slots.slots().flat_map(|s| s.counts.keys().map(|k| k.pid)).collect();
        HistoryView {
            config,
            slots: slots.slots().cloned().collect(),
            names: pids.into_iter().filter_map(|p| Some((p, slots.name(p)?.to_owned()))).collect(),
            taken,
            dropped: slots.dropped(),
            lost,
            bytes: slots.bytes(),
            shared,
        }
    }

    /// A view of `slots` taken at `taken`, with a symbolizer of its own.
    #[cfg(test)]
    pub(crate) fn detached(config: HistoryConfig, slots: Slots, taken: SystemTime) -> Self {
        let shared = Arc::new(Shared {
            symbolizer: Mutex::new(Symbolizer::new()),
            lost: std::sync::atomic::AtomicU64::new(0),
            stop: AtomicBool::new(true),
            slots: Mutex::new(Slots::new(config.slot, config.window, 0)),
        });
        Self::of(config, &slots, taken, 0, shared)
    }

    /// Runs `f` with the recorder's symbolizer (its snapshots name the
    /// processes that exited).
    pub(crate) fn with_symbolizer<R>(&self, f: impl FnOnce(&mut Symbolizer) -> R) -> R {
        f(&mut lock(&self.shared.symbolizer))
    }
}
