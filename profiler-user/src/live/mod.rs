//! The live view, `stackwatch top`: the CPU sampler attached for as long
//! as the view runs, its counts taken every refresh (`crate::bpf::live`),
//! symbolized with one long-lived symbolizer (its caches make each refresh
//! cost only the new addresses) and added to a [`table::TopTable`] drawn on
//! the terminal ([`term`]).
//!
//! It is the capture pipeline's program and kinds (`crate::kinds::cpu`),
//! with a window that stays open, so what `top` shows is what `record`
//! would write.

pub(crate) mod table;
pub(crate) mod term;

use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use profiler_common::Stat;

use crate::aggregate;
use crate::bpf::live::LIVE_WINDOW;
use crate::bpf::{Loader, UnwindMode};
use crate::kinds::{self, AttachTarget, Shape};
use crate::pipeline::session::register_python;
use crate::procfs::process;
use crate::profile::ProfileKind;
use crate::symbolize::Symbolizer;
use crate::target::{Filter, ResolvedTarget, TargetSpec};

use self::table::TopTable;

/// The sampler, attached, and what it has shown so far.
pub(crate) struct LiveTop {
    loader: Loader,
    symbolizer: Symbolizer,
    frequency_hz: u64,
    spec: TargetSpec,
    target: ResolvedTarget,
    pub table: TopTable,
}

impl LiveTop {
    /// Loads and attaches the CPU sampler for `target` and starts counting.
    pub(crate) fn start(spec: &TargetSpec, frequency_hz: u64) -> Result<Self> {
        let target = spec.resolve()?;
        let kinds = [ProfileKind::Cpu];
        // Tables where loaded, frame pointers elsewhere, as `record`'s default.
        let mut loader = Loader::load_with(&target.filter, kinds::programs_for(&kinds, UnwindMode::Auto))?;
        if let Filter::Pids(pids) = &target.filter {
            loader.load_unwind_tables(pids);
        }
        // Python processes running now: their frames are walked from the
        // first sample, as in a capture.
        let mut symbolizer = Symbolizer::new();
        let candidates = match &target.filter {
            Filter::Pids(pids) => pids.clone(),
            Filter::All | Filter::Cgroup { .. } => process::all_pids().unwrap_or_default(),
        };
        register_python(&mut loader, &mut symbolizer, &candidates);
        let cgroup_dir = spec.cgroup_dir();
        let attach = AttachTarget { frequency_hz, filter: &target.filter, cgroup_dir: cgroup_dir.as_deref() };
        kinds::attach(&mut loader, &kinds, &attach)?;
        loader.open_window(LIVE_WINDOW).context("failed to start counting")?;
        // Every refresh names kernel frames: from an index read once, not
        // a pass of kallsyms each second (50 ms of the kernel's time).
        symbolizer.keep_kernel_symbols();
        Ok(Self { loader, symbolizer, frequency_hz, spec: spec.clone(), target, table: TopTable::default() })
    }

    /// What is watched, for the header.
    pub(crate) fn description(&self) -> &str {
        &self.target.info.description
    }

    /// Takes the samples counted since the last refresh into the table.
    /// Follows a `--name` target's processes as they come and go.
    pub(crate) fn refresh(&mut self, interval: Duration) -> Result<()> {
        if let TargetSpec::Name(_) = &self.spec {
            if let Ok(now) = self.spec.resolve() {
                if let Filter::Pids(pids) = &now.filter {
                    self.loader.set_target_pids(pids)?;
                }
                self.target = now;
            }
        }
        self.loader.flush_logs();
        // Python processes that appeared since (new `--name` matches, new
        // pids on the host): walked from the next refresh on.
        let mut candidates = self.loader.pids_seen().unwrap_or_default();
        if let Filter::Pids(pids) = &self.target.filter {
            candidates.extend_from_slice(pids);
        }
        candidates.sort_unstable();
        candidates.dedup();
        register_python(&mut self.loader, &mut self.symbolizer, &candidates);
        let raw = self.loader.take_cpu_counts().context("failed to read the samples from the kernel")?;
        let agg = aggregate::aggregate(&raw);
        let plugin = kinds::of(ProfileKind::Cpu);
        let shape = Shape {
            frequency_hz: self.frequency_hz,
            programs: self.loader.programs(),
            start: SystemTime::now(),
            duration: interval,
        };
        let template = plugin.template(&shape);
        let period = template.period;
        let profile = self.symbolizer.build_profile(&agg, template, |s| plugin.values(s, period));
        self.table.add(&profile);
        self.symbolizer.forget_exited();
        // Read again if a module or BPF program came or went.
        self.symbolizer.keep_kernel_symbols();
        Ok(())
    }

    /// Samples lost since the start (a full map).
    pub(crate) fn lost(&self) -> u64 {
        self.loader.stats().map(|s| s.get(Stat::CountsMapFull)).unwrap_or(0)
    }

    /// Stops sampling and detaches.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.loader.close_window()?;
        self.loader.detach()
    }
}
