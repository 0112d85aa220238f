//! A capture in progress, the same for `record` and `watch`: the events of
//! its profile kinds attached, the target's CPU time metered, and the
//! kernel-enforced window open; then closed, with what it counted.
//!
//! The window is enforced by the kernel (see [`Loader::open_window`]): what
//! is counted spans exactly the window whatever attaching, detaching or a
//! late wake-up of this process costs.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use tracing::warn;

use super::meter::CpuMeter;
use crate::bpf::{Loader, Seen};
use crate::ids::Pid;
use crate::kinds::{self, AttachTarget};
use crate::procfs::process;
use crate::profile::capture::CaptureWindow;
use crate::profile::ProfileKind;
use crate::symbolize::Symbolizer;
use crate::sys::{monotonic_ns, Urgent};
use crate::target::{find_pids_by_name, Filter, TargetSpec};

/// A running capture.
pub(crate) struct Session {
    /// As opened: its planned end is the deadline.
    pub window: CaptureWindow,
    meter: CpuMeter,
}

/// A capture whose window is closed: nothing is counted any more.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ended {
    /// The window as it was counted.
    pub window: CaptureWindow,
    /// CPU time the target used inside it, when it could be read.
    pub cpu_seconds: Option<f64>,
}

impl Session {
    /// Attaches the events of `kinds`, starts the CPU meter and opens the
    /// window for `duration`. Whatever was attached is detached again if a
    /// step fails.
    pub(crate) fn start(
        loader: &mut Loader,
        symbolizer: &mut Symbolizer,
        kinds: &[ProfileKind],
        frequency_hz: u64,
        filter: &Filter,
        cgroup_dir: Option<&Path>,
        duration: Duration,
    ) -> Result<Session> {
        // Attaching is bounded work that a busy target must not delay.
        let _urgent = Urgent::enter();
        let target = AttachTarget { frequency_hz, filter, cgroup_dir };
        // Python processes started before the capture: their frames are
        // walked from the first sample on.
        let candidates = match filter {
            Filter::Pids(pids) => pids.clone(),
            Filter::All | Filter::Cgroup { .. } => process::all_pids().unwrap_or_default(),
        };
        register_python(loader, symbolizer, &candidates);
        let started = kinds::attach(loader, kinds, &target).and_then(|()| {
            let meter = CpuMeter::start(filter, cgroup_dir);
            Ok(Session { window: loader.open_window(duration)?, meter })
        });
        if started.is_ok() && kinds.contains(&ProfileKind::OffCpu) {
            // Every off-CPU stack has kernel frames: the kernel's symbols
            // (with the programs just attached) are read while sampling,
            // not after. For CPU samples, once one has a kernel stack
            // (`tick`): a capture of user code only may never need them.
            symbolizer.prefetch_kernel_symbols();
        } else {
            // Not an index an earlier capture left (a daemon's).
            symbolizer.release_kernel_symbols();
        }
        if started.is_err() {
            // Whatever did attach must not keep sampling.
            if let Err(e) = loader.detach() {
                warn!("{e:#}");
            }
        }
        started
    }

    /// Once a second while capturing: forwards the eBPF logs, lets the
    /// symbolizer snapshot the processes seen so far (so one that exits
    /// before the end still gets names), and follows a `--name` target to
    /// the processes that match now. False once every process of a `--pid`
    /// target (`pids`) has exited.
    pub(crate) fn tick(
        &self,
        loader: &mut Loader,
        symbolizer: &mut Symbolizer,
        spec: &TargetSpec,
        pids: &[Pid],
    ) -> bool {
        loader.flush_logs();
        let Seen { pids: seen, kernel_stacks } = loader.samples_seen().unwrap_or_default();
        if kernel_stacks {
            symbolizer.keep_kernel_symbols();
        }
        symbolizer.observe_pids(&seen);
        name_python_stacks(loader, symbolizer);
        let mut candidates = seen;
        let alive = match spec {
            TargetSpec::Name(re) => {
                let pids = find_pids_by_name(re);
                if !pids.is_empty() {
                    if let Err(e) = loader.set_target_pids(&pids) {
                        warn!("failed to update the target processes: {e:#}");
                    }
                    self.meter.set_pids(&pids);
                }
                candidates.extend_from_slice(&pids);
                true
            }
            TargetSpec::Pids(_) => {
                candidates.extend_from_slice(pids);
                pids.iter().any(|&p| process::is_running(p))
            }
            TargetSpec::Cgroup(_) | TargetSpec::Host => true,
        };
        // Processes that started (or finished starting their interpreter)
        // since: new `--name` matches, new pids in a host or cgroup capture.
        candidates.sort_unstable();
        candidates.dedup();
        register_python(loader, symbolizer, &candidates);
        alive
    }

    /// Ends the capture: the kernel stops counting now (at the deadline it
    /// already had). Whatever detaching costs from here on is outside the
    /// window. Should the window not close, everything is detached at once
    /// instead.
    pub(crate) fn stop(self, loader: &mut Loader) -> Ended {
        let _urgent = Urgent::enter();
        let window = match loader.close_window() {
            Ok(Some(window)) => window,
            failed => {
                if let Err(e) = failed {
                    warn!("{e:#}; detaching at once instead");
                }
                if let Err(e) = loader.detach() {
                    warn!("{e:#}");
                }
                self.window.closed_at(monotonic_ns())
            }
        };
        let cpu_seconds = self.meter.finish(&window);
        Ended { window, cpu_seconds }
    }
}

/// Hands the kernel the Python processes among `pids` (replacing the
/// previous set only when one is found: a process is dropped from it when
/// the next capture starts).
pub(crate) fn register_python(loader: &mut Loader, symbolizer: &mut Symbolizer, pids: &[Pid]) {
    let procs = symbolizer.python_processes(pids);
    if procs.is_empty() {
        return;
    }
    if let Err(e) = loader.add_python_processes(&procs) {
        warn!("Python frames will be missing: {e:#}");
    }
}

/// Names the code objects of the Python stacks sampled so far, while their
/// processes run (one that exits before the capture ends keeps them).
fn name_python_stacks(loader: &Loader, symbolizer: &mut Symbolizer) {
    let Ok(ids) = loader.python_stacks_seen() else { return };
    for (pid, id) in ids {
        if !symbolizer.python_needs(pid, id) {
            continue;
        }
        if let Ok(Some(record)) = loader.stack(id) {
            symbolizer.remember_python(pid, id, &crate::aggregate::py_frames(record.frames()));
        }
    }
}
